/**
 * ts-node's transpiler for this repository (tsconfig.json's "ts-node" section): TypeScript's own
 * transpileModule, as ts-node runs it with transpileOnly, with its output kept on disk under
 * node_modules/.cache. Every script and every process a test spawns transpiles the same files
 * again otherwise: about two thirds of a command's start-up CPU.
 *
 * The key is everything the output depends on: TypeScript's and ts-node's versions, the compiler
 * options, the module format, the file's name and its text. Output with diagnostics is not kept
 * (ts-node reports them); a cache that cannot be read or written is skipped, never an error.
 */
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
// ts-node's own transpileModule for Node16 module kinds (what its transpileOnly mode runs), by path:
// its package exports do not list it.
const TS_NODE_DIST = path.dirname(require.resolve('ts-node'));
const { createTsTranspileModule } = require(path.join(TS_NODE_DIST, 'ts-transpile-module.js'));
const TS_NODE_VERSION = JSON.parse(fs.readFileSync(path.join(TS_NODE_DIST, '..', 'package.json'), 'utf8')).version;

const DIR = path.resolve(__dirname, '../node_modules/.cache/sagaflow-ts-node');

exports.create = ({ service, nodeModuleEmitKind }) => {
  const ts = require(service.projectLocalResolveHelper('typescript', true));
  const compilerOptions = service.config.options;
  const format = nodeModuleEmitKind === 'nodeesm' ? 'module' : 'commonjs';
  const transpile = createTsTranspileModule(ts, { compilerOptions, reportDiagnostics: true });
  const salt = JSON.stringify([ts.version, TS_NODE_VERSION, compilerOptions, format]);
  return {
    transpile(input, { fileName }) {
      const key = createHash('sha256').update(salt).update('\0').update(fileName).update('\0').update(input).digest('hex');
      const file = path.join(DIR, `${key}.json`);
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch {
        // Not there yet (or unreadable): transpile.
      }
      const result = transpile(input, { fileName }, format);
      if (!result.diagnostics || result.diagnostics.length === 0) {
        try {
          fs.mkdirSync(DIR, { recursive: true });
          const tmp = `${file}.${process.pid}.tmp`;
          fs.writeFileSync(tmp, JSON.stringify({ outputText: result.outputText, sourceMapText: result.sourceMapText }));
          fs.renameSync(tmp, file);
        } catch {
          // A read-only tree: run without the cache.
        }
      }
      return result;
    },
  };
};

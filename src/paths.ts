import fs from 'node:fs';
import path from 'node:path';

/**
 * The package's root directory, the same whether this runs from the
 * TypeScript sources (ts-node) or from the compiled JavaScript in dist/.
 */
export const PACKAGE_ROOT = findRoot(__dirname);

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && path.basename(dir) !== 'dist') return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

/** True when running compiled JavaScript (dist/), false under ts-node. */
export const COMPILED = __filename.endsWith('.js');

/**
 * How to start another of this package's entry points as a process: `node
 * dist/bin/<name>.js` when compiled, `node -r ts-node/register/transpile-only
 * bin/<name>.ts` from source.
 */
export function entryPoint(name: string): string[] {
  return COMPILED
    ? [path.join(PACKAGE_ROOT, 'dist', 'bin', `${name}.js`)]
    : ['-r', 'ts-node/register/transpile-only', path.join(PACKAGE_ROOT, 'bin', `${name}.ts`)];
}

/**
 * Loaded by ts-node before any script of this repository (tsconfig.json's
 * "ts-node" section): `@sagaflow/toolkit/<subpath>` resolves to the toolkit's
 * TypeScript sources, as Node's `--conditions=sagaflow-source` would, so a
 * script run from source uses the toolkit's source too and never a stale
 * packages/toolkit/dist. Compiled code (dist/, the image) does not load this
 * and uses the toolkit's compiled files.
 */
const Module = require('node:module');
const path = require('node:path');

const TOOLKIT = path.resolve(__dirname, '../packages/toolkit');
const pkg = require(path.join(TOOLKIT, 'package.json'));
const sources = new Map(
  Object.entries(pkg.exports)
    .filter(([, target]) => typeof target === 'object' && target['sagaflow-source'])
    .map(([subpath, target]) => [`${pkg.name}${subpath.slice(1)}`, path.join(TOOLKIT, target['sagaflow-source'])]),
);
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return sources.get(request) ?? resolve.call(this, request, ...rest);
};

import path from 'node:path';
import type { BundleOptions } from '@temporalio/worker';

type WebpackConfigHook = NonNullable<BundleOptions['webpackConfigHook']>;

const TOOLKIT = path.resolve(__dirname, '../packages/toolkit');

/**
 * Inside this repository `@sagaflow/toolkit/<subpath>` is the workspace package
 * in packages/toolkit: its `exports` point the `sagaflow-source` condition at the
 * TypeScript sources. TypeScript (customConditions), Jest (moduleNameMapper, in
 * jest.config.js) and ts-node (the preload in tsconfig.json) follow it; this does
 * the same for the workflow bundler, so the sagas bundle the toolkit from source
 * here and from its compiled files anywhere else (dist/, an installed package).
 */
export function toolkitSourceAliases(): Record<string, string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require(path.join(TOOLKIT, 'package.json')) as { name: string; exports: Record<string, string | Record<string, string>> };
  const aliases: Record<string, string> = {};
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'object' && target['sagaflow-source']) {
      aliases[`${pkg.name}${subpath.slice(1)}$`] = path.join(TOOLKIT, target['sagaflow-source']);
    }
  }
  return aliases;
}

/** A webpackConfigHook that resolves `@sagaflow/toolkit/*` to the toolkit's sources. */
export const bundleFromSource: WebpackConfigHook = (config) => ({
  ...config,
  resolve: { ...config.resolve, alias: { ...(config.resolve?.alias as Record<string, string>), ...toolkitSourceAliases() } },
});

/** This process runs the TypeScript sources (ts-node, Jest), not dist/: bundle the toolkit from source too. */
export const runningFromSource = __filename.endsWith('.ts');

/** The bundler options for the sagas of this repository: the toolkit from source when this runs from source. */
export const toolkitBundlerOptions = (): Pick<BundleOptions, 'webpackConfigHook'> => (runningFromSource ? { webpackConfigHook: bundleFromSource } : {});

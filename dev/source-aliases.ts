import path from 'node:path';
import type { BundleOptions } from '@temporalio/worker';

type WebpackConfigHook = NonNullable<BundleOptions['webpackConfigHook']>;

const ROOT = path.resolve(__dirname, '..');

/**
 * Inside this repository `sagaflow/<subpath>` names the package itself: its
 * `exports` point the `sagaflow-source` condition at the TypeScript sources
 * (package.json). TypeScript (customConditions), Jest (moduleNameMapper, in
 * jest.config.js) and Node (`--conditions=sagaflow-source`) follow it; this is
 * the same for the workflow bundler, so a saga written against the package
 * bundles from source here and from the installed package anywhere else.
 */
export function sagaflowSourceAliases(): Record<string, string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require(path.join(ROOT, 'package.json')) as { exports: Record<string, string | Record<string, string>> };
  const aliases: Record<string, string> = {};
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'object' && target['sagaflow-source']) {
      aliases[`sagaflow${subpath.slice(1)}$`] = path.join(ROOT, target['sagaflow-source']);
    }
  }
  return aliases;
}

/** A webpackConfigHook that resolves `sagaflow/*` to this repository's sources. */
export const bundleFromSource: WebpackConfigHook = (config) => ({
  ...config,
  resolve: { ...config.resolve, alias: { ...(config.resolve?.alias as Record<string, string>), ...sagaflowSourceAliases() } },
});

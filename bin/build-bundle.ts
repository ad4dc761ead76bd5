import { buildWorkflowBundle } from '../workers/bundle';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run build:bundle -- [OUT]

Builds the workflow bundle once (default dist/workflow-bundle.js) so workers
start in about half a second instead of bundling at start.`;

runMain(USAGE, async () => {
  const started = Date.now();
  const { path, bytes } = await buildWorkflowBundle(process.argv[2]);
  console.log(`workflow bundle: ${path} (${(bytes / 1024).toFixed(0)} KiB) in ${Date.now() - started} ms`);
});

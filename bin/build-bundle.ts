import { buildWorkflowBundle } from '../workers/bundle';
import { runMain } from './run';

runMain(async () => {
  const started = Date.now();
  const { path, bytes } = await buildWorkflowBundle(process.argv[2]);
  console.log(`workflow bundle: ${path} (${(bytes / 1024).toFixed(0)} KiB) in ${Date.now() - started} ms`);
});

import { findTemporalCli } from '../dev/temporal';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run temporal:install

Makes sure a Temporal CLI is at hand: TEMPORAL_CLI_PATH, \`temporal\` on PATH, or
the cache (SAGAFLOW_CACHE_DIR); otherwise builds it once with Go from tools/temporal, showing
progress. Prints where it is.`;

/** Makes sure a Temporal CLI is at hand (building it with Go into the cache if needed) and prints where. */
runMain(USAGE, async () => {
  const found = await findTemporalCli({ cliPath: process.env.TEMPORAL_CLI_PATH || undefined, log: (m) => console.log(m) });
  if (!found) {
    console.error(
      'No Temporal CLI: none on TEMPORAL_CLI_PATH or PATH, none cached, and no Go to build one.\n' +
        'Install Go (then this builds it), put `temporal` on PATH, or set TEMPORAL_ADDRESS to a running server.',
    );
    return 1;
  }
  console.log(`Temporal CLI: ${found.path} (${found.source})`);
  return 0;
});

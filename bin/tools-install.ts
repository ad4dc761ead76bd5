import { findTemporalCli } from '../dev/temporal';
import { ensureComposeCheck, ensurePromtool } from '../dev/tools';
import path from 'node:path';
import { ensureServerTools } from '../dev/temporal-cluster';
import { ensureUiServer } from '../dev/temporal-ui';
import { runMain } from './run';

const USAGE = `usage: npm run tools:install

Makes sure the tools the tests and CI use are at hand, building or fetching each
once into the cache (SAGAFLOW_CACHE_DIR, ~/.cache/sagaflow) with progress:
the Temporal CLI (its dev server is the tests' Temporal), promtool (checks the alert
rules and every /metrics), compose-check (Docker Compose's own parser, for
docker-compose.yml), the Temporal server with temporal-sql-tool (the cluster
suite's self-hosted cluster) and Temporal's Web UI server (the cluster's UI).
Prints where each is.`;

runMain(USAGE, async () => {
  const log = (m: string) => console.log(m);
  const temporal = await findTemporalCli({ cliPath: process.env.TEMPORAL_CLI_PATH || undefined, log });
  const promtool = await ensurePromtool(log);
  const composeCheck = await ensureComposeCheck(log);
  // The production server and its SQL tool, for the cluster suite and `npm run stack -- --temporal cluster`.
  const server = await ensureServerTools(log);
  const ui = await ensureUiServer(log);
  const missing = Object.entries({
    'Temporal CLI': temporal?.path,
    promtool,
    'compose-check': composeCheck,
    'Temporal server': server?.server,
    'Temporal Web UI': ui,
  }).filter(([, p]) => !p);
  console.log(`Temporal CLI: ${temporal ? `${temporal.path} (${temporal.source})` : 'none'}`);
  console.log(`promtool: ${promtool ?? 'none'}`);
  console.log(`compose-check: ${composeCheck ?? 'none'}`);
  console.log(`Temporal server and temporal-sql-tool: ${server ? path.dirname(server.server) : 'none'}`);
  console.log(`Temporal Web UI server: ${ui ?? 'none'}`);
  if (missing.length) {
    console.error(
      `missing: ${missing.map(([n]) => n).join(', ')}. They are built with Go (go env GOPROXY must reach the Go module proxy); ` +
        'or put temporal and promtool on PATH.',
    );
    return 1;
  }
  return 0;
});

import path from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../src/config';
import { findTemporalCli } from '../dev/temporal';
import { ensureServerTools } from '../dev/temporal-cluster';
import { ensureUiServer } from '../dev/temporal-ui';
import { ensureAmtool, ensureComposeCheck, ensurePromtool } from '../dev/tools';
import { ensureNatsServer } from '../dev/nats';
import { ensurePgAutoFailover } from '../dev/postgres-ha';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run tools:install [-- --only test|cluster]

Makes sure the tools the tests and CI use are at hand, building or fetching each
once into the cache (SAGAFLOW_CACHE_DIR, ~/.cache/sagaflow) with progress, and
prints where each is:

  for npm test:          the Temporal CLI (its dev server is the tests' Temporal),
                         promtool (checks the alert rules and every /metrics) and
                         compose-check (Docker Compose's own parser, for docker-compose.yml),
                         amtool (checks the Alertmanager's routing; Debian's package),
                         nats-server (the stream intake's broker when NATS_URL is unset;
                         Debian's package)
  for npm run test:cluster and npm run stack -- --temporal cluster:
                         the Temporal server with temporal-sql-tool, and Temporal's
                         Web UI server; pg_auto_failover (npm run stack -- --postgres ha,
                         the failover test; Debian's pg-auto-failover-cli and
                         postgresql-NN-auto-failover)

--only test or --only cluster installs one of the two sets; both by default.`;

runMain(USAGE, async () => {
  const { values } = parseArgs({ options: { only: { type: 'string' } } });
  if (values.only !== undefined && values.only !== 'test' && values.only !== 'cluster') {
    throw new UsageError(`--only: test or cluster, not "${values.only}"`);
  }
  const log = (m: string) => console.log(m);
  const found: Record<string, string | undefined> = {};
  if (values.only !== 'cluster') {
    const temporal = await findTemporalCli({ cliPath: process.env.TEMPORAL_CLI_PATH || undefined, log });
    found['Temporal CLI'] = temporal && `${temporal.path} (${temporal.source})`;
    found.promtool = await ensurePromtool(log);
    found['compose-check'] = await ensureComposeCheck(log);
    found.amtool = await ensureAmtool(log);
    found['nats-server'] = await ensureNatsServer(log);
  }
  if (values.only !== 'test') {
    const server = await ensureServerTools(log);
    found['Temporal server and temporal-sql-tool'] = server && path.dirname(server.server);
    found['Temporal Web UI server'] = await ensureUiServer(log);
    found.pg_auto_failover = await ensurePgAutoFailover(log);
  }
  for (const [name, where] of Object.entries(found)) console.log(`${name}: ${where ?? 'none'}`);
  const missing = Object.keys(found).filter((name) => !found[name]);
  if (missing.length) {
    console.error(
      `missing: ${missing.join(', ')}. They are built with Go (go env GOPROXY must reach the Go module proxy); ` +
        'or put temporal and promtool on PATH.' +
        (missing.includes('pg_auto_failover') ? " pg_auto_failover and nats-server come from Debian's packages (apt-get, as root)." : '') +
        (missing.includes('amtool') ? " amtool comes from Debian's prometheus-alertmanager package (apt-get download; run apt-get update first)." : ''),
    );
    return 1;
  }
  return 0;
});

import { parseArgs } from 'node:util';
import { loadConfig, UsageError } from '../src/config';
import { listStock } from '../src/inventory/stock';
import { DEV_CATALOGUE, seedCatalogue } from '../dev/catalogue';
import { redact, startStack } from '../dev/stack';
import { watchStack } from '../dev/stack-watch';
import { runMain, untilStopSignal } from '../src/run-main';

const USAGE = `usage: npm run stack -- [--temporal dev|cluster] [--postgres embedded|ha]

The development stack in one process: an embedded PostgreSQL (or DATABASE_URL)
with migrations and a small catalogue (widget, gadget, gizmo), the simulated
provider and carrier, the Temporal dev server with its UI, and a nats-server with
JetStream for the stream intake (or NATS_URL). Payloads are encrypted with a key
kept in the state directory (or SAGAFLOW_PAYLOAD_KEYS), and the UI decodes them
through a codec server of the stack's (SAGAFLOW_CODEC_PORT, 8888 when free). Prints the
variables to export in other shells. State lives in SAGAFLOW_STATE_DIR
(.sagaflow); a second stack beside it needs its own SAGAFLOW_STATE_DIR and
SAGAFLOW_EMBEDDED_PG_PORT. Ctrl-C stops everything.

--temporal cluster: instead of the dev server, a self-hosted Temporal cluster on the
stack's PostgreSQL (the production server built from its Go module once, its schema
applied with temporal-sql-tool, 2 frontend, 2 history, 2 matching and 1 worker host
as separate processes), the frontends behind one balanced address (7233 when free)
and Temporal's Web UI on it (8233 when free). Prints the frontends.

--postgres ha: sagaflow's database as a primary with a synchronous standby under
pg_auto_failover (a monitor and two nodes, each a pg_autoctl run, in a temporary
directory on free ports; npm run tools:install -- --only cluster installs it), and a
DATABASE_URL naming both nodes (target_session_attrs=read-write): every process
follows a failover to the promoted standby. The database and the dev server's
sagas start afresh each time. A keeper that dies is started again and rejoins.`;

/** Starts the dev stack and keeps it up, printing how to point workers, the API and the CLIs at it. */
runMain(USAGE, async () => {
  const { values } = parseArgs({ options: { temporal: { type: 'string', default: 'dev' }, postgres: { type: 'string', default: 'embedded' } } });
  if (values.temporal !== 'dev' && values.temporal !== 'cluster') throw new UsageError(`--temporal: dev or cluster, not "${values.temporal}"`);
  if (values.postgres !== 'embedded' && values.postgres !== 'ha') throw new UsageError(`--postgres: embedded or ha, not "${values.postgres}"`);
  if (values.postgres === 'ha' && values.temporal === 'cluster') throw new UsageError('--postgres ha runs with the Temporal dev server, not --temporal cluster');
  const config = loadConfig();
  const stack = await startStack(config, (m) => console.log(`[stack] ${m}`), { temporal: values.temporal, postgres: values.postgres });
  const seeded = await seedCatalogue(stack.db);
  const stock = await listStock(stack.db, Object.keys(DEV_CATALOGUE));
  const skus = Number((await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM inventory')).rows[0]?.n ?? 0);
  console.log('\nThe stack is up. In every other shell, first run:\n');
  console.log(
    `  export DATABASE_URL='${stack.databaseUrl}' TEMPORAL_ADDRESS=${stack.temporal.address} ` +
      `PAYMENT_PROVIDER_URL=${stack.paymentProviderUrl} CARRIER_URL=${stack.carrierUrl} NATS_URL=${stack.natsUrl} ` +
      (stack.natsReplicas > 1 ? `NATS_STREAM_REPLICAS=${stack.natsReplicas} ` : '') +
      `WEBHOOK_SECRETS_KEY=${stack.webhookSecretsKey} WEBHOOK_ALLOW_PRIVATE_URLS=true ` +
      Object.entries(stack.payloadEnv ?? {})
        .map(([k, v]) => `${k}='${v}'`)
        .join(' ') +
      (stack.codecServer ? ` SAGAFLOW_CODEC_TOKEN='${stack.codecServer.token}'` : '') +
      '\n',
  );
  console.log('then `npm run worker`, `npm run api`, `npm run intake`, `npm run relay`, `npm run clients -- create acme`, `npm run inventory -- list`.\n');
  console.log(
    `Free stock: ${stock.map((s) => `${s.sku} ${s.available}`).join(', ')}` +
      (skus > stock.length ? ` and ${skus - stock.length} more SKUs` : '') +
      (seeded.length ? ` (just seeded: ${seeded.join(', ')})` : ''),
  );
  if (stack.temporal.uiUrl) console.log(`Temporal UI: ${stack.temporal.uiUrl}`);
  if (stack.temporal.metricsUrl) console.log(`Temporal server metrics (Prometheus): ${stack.temporal.metricsUrl}`);
  if (stack.codecServer) {
    console.log(
      `Payloads are encrypted; the UI decodes them through the codec server at ${stack.codecServer.url}, and so does the CLI:\n` +
        `  temporal workflow show -w order-<id> --detailed --address ${stack.temporal.address} --codec-endpoint ${stack.codecServer.url} --codec-auth "Bearer $SAGAFLOW_CODEC_TOKEN"`,
    );
  }
  console.log(`(database ${redact(stack.databaseUrl)}; Ctrl-C stops everything)`);
  // Reports PostgreSQL, Temporal or NATS going away and coming back, starts again what it started, and keeps the process up.
  const watch = watchStack(stack.parts, (m) => console.log(`[stack] ${m}`));
  await untilStopSignal();
  watch.stop();
  await stack.stop();
});

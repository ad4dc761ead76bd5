import { Client, Connection } from '@temporalio/client';
import { startApi, startApiHousekeeping } from '../src/api/server';
import { SagaMetrics } from '../src/observability/metrics';
import { registerOpenSagaMetrics } from '../src/observability/open-sagas';
import { startTracing } from '../src/observability/tracing';
import { ConfigError, loadConfig } from '../src/config';
import { migrate } from '../src/db/migrate';
import { createPool } from '../src/db/pool';
import { clientConnectionOptions, temporalTargetOrExplain } from '../src/temporal-connect';
import { awaitDependency, databaseDependency, databaseLabel, describeNamespaceWithin, namespaceProblem, temporalTransient } from '../src/startup';
import { runMain } from '../src/run-main';
import { parseSealingKey } from '../src/webhooks/signing';
import { createLogger, lineLogger } from '../src/observability/log';
import { dataConverterOf, describePayloadCodec, payloadCodecSetting } from '../src/codec/settings';

const USAGE = `usage: npm run api

The HTTP API: start, watch and cancel order sagas (README, "HTTP API"). Listens on
API_HOST:API_PORT (127.0.0.1:8080) and serves /metrics, /healthz, /readyz and
/openapi.json beside the routes. Needs DATABASE_URL and TEMPORAL_ADDRESS
(\`npm run stack\` prints both); every setting is an environment variable
(README, "Configuration"). It listens at once and waits for PostgreSQL and
Temporal (/readyz says which it waits for). SIGTERM or SIGINT drains requests
and exits 0. Exit codes: 2 a bad setting, 3 the database refused it, 5 no such
Temporal namespace, 6 the port is in use (docs/operations.md, "Exit codes").`;

/**
 * The HTTP API process. It listens at once: /healthz answers 200 while it waits for PostgreSQL (its
 * migrations) and Temporal (its namespace), /readyz 503 naming what it waits for, every other route
 * 503 with Retry-After. A port in use, a database that refuses it or a namespace that does not exist
 * is one line naming the cause and the fix, and its own exit code.
 */
runMain(USAGE, async () => {
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required by the API' }]);
  const databaseUrl = config.DATABASE_URL;
  const payloadCodec = payloadCodecSetting(config);
  const target = temporalTargetOrExplain();
  const address = target.connectionOptions.address;
  const logger = createLogger({ service: 'sagaflow-api', level: config.LOG_LEVEL });
  const log = lineLogger(logger);
  const db = createPool({ connectionString: databaseUrl, max: config.DATABASE_POOL_MAX });
  const tracing = startTracing({ endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: config.OTEL_SERVICE_NAME ?? 'sagaflow-api' });
  // Connects on its first call, so the API can listen before Temporal answers.
  const connection = Connection.lazy(clientConnectionOptions(target.connectionOptions));
  const temporal = new Client({ connection, namespace: target.namespace, dataConverter: dataConverterOf(payloadCodec), plugins: tracing ? [tracing.plugin] : [] });
  const metrics = new SagaMetrics({ processMetrics: true, role: 'api' });
  // Open sagas by state and the age of the oldest, read from the orders at each scrape (the alert rules' source).
  registerOpenSagaMetrics(metrics.registry, db);
  // What it waits for, named in /readyz until each answers: set before the port opens.
  const pending: Record<string, string> = {
    database: `waiting for ${databaseLabel(databaseUrl)}`,
    temporal: `waiting for Temporal at ${address}`,
  };
  const closeAll = async () => {
    await tracing?.shutdown();
    await connection.close().catch(() => undefined);
    await db.end().catch(() => undefined);
  };
  let api: Awaited<ReturnType<typeof startApi>>;
  try {
    api = await startApi({
      db,
      temporal,
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      keyTtlMs: config.IDEMPOTENCY_KEY_TTL_HOURS * 3600_000,
      host: config.API_HOST,
      port: config.API_PORT,
      metrics,
      searchAttributes: config.SAGAFLOW_SEARCH_ATTRIBUTES,
      workflowType: config.SAGAFLOW_ORDER_SAGA_TYPE,
      temporalUiUrl: config.TEMPORAL_UI_URL,
      throttle: {
        perSecond: config.API_RATE_LIMIT_PER_SECOND,
        burst: config.API_RATE_BURST,
        authFailures: config.API_AUTH_FAILURE_LIMIT,
        authWindowMs: config.API_AUTH_FAILURE_WINDOW_SECONDS * 1000,
      },
      webhooks: {
        sealingKey: config.WEBHOOK_SECRETS_KEY ? parseSealingKey(config.WEBHOOK_SECRETS_KEY) : undefined,
        allowPrivate: config.WEBHOOK_ALLOW_PRIVATE_URLS,
      },
      startup: () => pending,
      log,
    });
  } catch (err) {
    await closeAll();
    throw err;
  }
  logger.info({ url: api.url, docs: `${api.url}/docs`, temporalUi: config.TEMPORAL_UI_URL, payloadEncryption: describePayloadCodec(payloadCodec) }, 'api listening');
  const stop = new AbortController();
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      stop.abort(signal);
      resolve();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  // PostgreSQL (the migrations) and Temporal (the namespace) side by side; either may be down for a while.
  let housekeeping: ReturnType<typeof startApiHousekeeping> | undefined;
  try {
    const ready = await Promise.all([
      awaitDependency(
        databaseDependency(databaseUrl, async () => {
          await migrate(databaseUrl);
        }),
        pending,
        { log, signal: stop.signal },
      ),
      awaitDependency(
        {
          name: 'temporal',
          what: `Temporal at ${address}`,
          attempt: () => describeNamespaceWithin(connection, target.namespace, 3000),
          transient: temporalTransient,
          fatal: (err) => namespaceProblem(err, target.namespace, address),
        },
        pending,
        { log, signal: stop.signal },
      ),
    ]);
    if (ready.every(Boolean)) {
      // Expired Idempotency-Keys purged; orders whose request died before their saga started get it.
      housekeeping = startApiHousekeeping({ db, temporal, taskQueue: config.TEMPORAL_TASK_QUEUE, metrics, searchAttributes: config.SAGAFLOW_SEARCH_ATTRIBUTES, workflowType: config.SAGAFLOW_ORDER_SAGA_TYPE, log });
      logger.info({ url: api.url, namespace: target.namespace }, 'api ready');
      await stopped;
    }
  } catch (err) {
    // A dependency that is wrong, not down: one line and its exit code (runMain).
    stop.abort('fatal');
    await api.close();
    await closeAll();
    throw err;
  }
  housekeeping?.stop();
  await api.close();
  await closeAll();
});

import { Client, Connection } from '@temporalio/client';
import { startApi, startApiHousekeeping } from '../src/api/server';
import { SagaMetrics } from '../src/observability/metrics';
import { startTracing } from '../src/observability/tracing';
import { ConfigError, loadConfig } from '../src/config';
import { migratePatiently } from '../src/db/migrate';
import { createPool } from '../src/db/pool';
import { clientConnectionOptions, connectPatiently, temporalTargetOrExplain } from '../src/temporal-connect';
import { runMain } from '../src/run-main';
import { parseSealingKey } from '../src/webhooks/signing';
import { createLogger, lineLogger } from '../src/observability/log';
import { dataConverterOf, describePayloadCodec, payloadCodecSetting } from '../src/codec/settings';

const USAGE = `usage: npm run api

The HTTP API: start, watch and cancel order sagas (README, "HTTP API"). Listens on
API_HOST:API_PORT (127.0.0.1:8080) and serves /metrics, /healthz, /readyz and
/openapi.json beside the routes. Needs DATABASE_URL and TEMPORAL_ADDRESS
(\`npm run stack\` prints both); every setting is an environment variable
(README, "Configuration"). SIGTERM or SIGINT drains requests and exits 0.`;

/** The HTTP API process. Needs DATABASE_URL and TEMPORAL_ADDRESS (`npm run stack` prints both). */
runMain(USAGE, async () => {
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required by the API' }]);
  const payloadCodec = payloadCodecSetting(config);
  const logger = createLogger({ service: 'sagaflow-api', level: config.LOG_LEVEL });
  const log = lineLogger(logger);
  // A database restarting or a connection terminated at start-up is waited out, then a clear error.
  await migratePatiently(config.DATABASE_URL!, { log });
  const db = createPool({ connectionString: config.DATABASE_URL!, max: config.DATABASE_POOL_MAX });
  const tracing = startTracing({ endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: config.OTEL_SERVICE_NAME ?? 'sagaflow-api' });
  const target = temporalTargetOrExplain();
  const connection = await connectPatiently(() => Connection.connect(clientConnectionOptions(target.connectionOptions)), { log });
  const temporal = new Client({ connection, namespace: target.namespace, dataConverter: dataConverterOf(payloadCodec), plugins: tracing ? [tracing.plugin] : [] });
  const metrics = new SagaMetrics({ processMetrics: true, role: 'api' });
  const api = await startApi({
    db,
    temporal,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    keyTtlMs: config.IDEMPOTENCY_KEY_TTL_HOURS * 3600_000,
    host: config.API_HOST,
    port: config.API_PORT,
    metrics,
    searchAttributes: config.SAGAFLOW_SEARCH_ATTRIBUTES,
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
    log,
  });
  // Expired Idempotency-Keys purged; orders whose request died before their saga started get it.
  const housekeeping = startApiHousekeeping({ db, temporal, taskQueue: config.TEMPORAL_TASK_QUEUE, metrics, searchAttributes: config.SAGAFLOW_SEARCH_ATTRIBUTES, log });
  logger.info({ url: api.url, docs: `${api.url}/docs`, temporalUi: config.TEMPORAL_UI_URL, payloadEncryption: describePayloadCodec(payloadCodec) }, 'api listening');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  housekeeping.stop();
  await api.close();
  await tracing?.shutdown();
  await connection.close();
  await db.end();
});

import { NativeConnection, Runtime } from '@temporalio/worker';
import { freePort } from '../src/ports';
import { JsonLogger, toTemporalLevel } from '../src/observability/log';
import { SagaMetrics, serveMetrics } from '../src/observability/metrics';
import { startTracing } from '../src/observability/tracing';
import { loadConfig, ConfigError } from '../src/config';
import { createPool } from '../src/db/pool';
import { connectPatiently, temporalTargetOrExplain } from '../src/temporal-connect';
import { runMain } from './run';
import { startLedgerRetention } from '../workers/ledger-retention';
import { prebuiltBundle } from '../workers/bundle';
import { workerOptions } from '../workers/options';
import { createSagaWorker } from '../workers/worker';

/**
 * A worker process: polls the task queues it is given (all by default).
 * SIGINT/SIGTERM stop polling, let in-flight activities finish within the grace
 * time, and exit 0.
 */
runMain(async () => {
  const started = Date.now();
  const config = loadConfig();
  const opts = workerOptions(process.argv.slice(2), config);
  const missing = (['DATABASE_URL', 'PAYMENT_PROVIDER_URL', 'CARRIER_URL'] as const).filter(
    (k) => !config[k],
  );
  if (missing.length) {
    throw new ConfigError(
      missing.map((variable) => ({ variable, message: 'required by a worker (`npm run stack` prints all four)' })),
    );
  }
  // Temporal Core exports its runtime metrics on a private port; our /metrics appends them.
  const corePort = await freePort();
  Runtime.install({
    logger: new JsonLogger(toTemporalLevel(config.LOG_LEVEL)),
    telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${corePort}` } } },
  });
  const metrics = new SagaMetrics({ processMetrics: true });
  const tracing = startTracing({
    endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT,
    serviceName: config.OTEL_SERVICE_NAME ?? 'sagaflow-worker',
  });
  const metricsServer = await serveMetrics(metrics, {
    host: config.METRICS_HOST,
    port: opts.metricsPort,
    extraUrl: `http://127.0.0.1:${corePort}/metrics`,
  });
  const db = createPool({ connectionString: config.DATABASE_URL! });
  const target = temporalTargetOrExplain();
  const connection = await connectPatiently(() => NativeConnection.connect(target.connectionOptions), {
    log: (line) => console.log(JSON.stringify(line)),
  });
  // The tracing plugin adds workflow interceptors, which only a bundle built at start can contain.
  const bundle = tracing
    ? undefined
    : config.SAGAFLOW_WORKFLOW_BUNDLE
      ? { codePath: config.SAGAFLOW_WORKFLOW_BUNDLE }
      : prebuiltBundle();
  const worker = await createSagaWorker({
    connection,
    namespace: target.namespace,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    queues: opts.queues,
    concurrency: opts.concurrency,
    pollers: opts.pollers,
    paymentsPerSecond: opts.paymentsPerSecond,
    shutdownGraceTime: opts.shutdownGraceMs,
    workflowBundle: opts.queues.includes('workflows') ? bundle : undefined,
    metrics,
    plugins: tracing ? [tracing.plugin] : [],
    deps: {
      db,
      paymentProviderUrl: config.PAYMENT_PROVIDER_URL!,
      carrierUrl: config.CARRIER_URL!,
      providerTimeoutMs: config.PROVIDER_TIMEOUT_MS,
    },
  });
  console.log(
    JSON.stringify({
      msg: 'worker ready',
      queues: worker.workers.map((w) => w.taskQueue),
      bundle: opts.queues.includes('workflows') ? (bundle ? 'prebuilt' : 'built at start') : 'none',
      startMs: Date.now() - started,
      metrics: metricsServer.url,
      tracing: tracing ? config.OTEL_EXPORTER_OTLP_ENDPOINT : 'off',
      temporalUi: config.TEMPORAL_UI_URL ?? 'set TEMPORAL_UI_URL to print it here',
      pid: process.pid,
    }),
  );
  const stopRetention = startLedgerRetention({
    db,
    retentionMs: config.LEDGER_RETENTION_DAYS * 86_400_000,
    intervalMs: config.LEDGER_PURGE_INTERVAL_MINUTES * 60_000,
    metrics,
    log: (line) => console.log(JSON.stringify(line)),
  });
  await worker.run();
  stopRetention();
  await metricsServer.close();
  await tracing?.shutdown();
  await connection.close();
  await db.end();
  console.log(JSON.stringify({ msg: 'worker stopped', pid: process.pid }));
});

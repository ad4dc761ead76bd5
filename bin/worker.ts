import { NativeConnection, Runtime } from '@temporalio/worker';
import { freePort } from '../src/ports';
import { createLogger, lineLogger, TemporalLogger } from '../src/observability/log';
import { SagaMetrics, serveMetrics } from '../src/observability/metrics';
import type { Checks } from '../src/observability/health';
import { startTracing } from '../src/observability/tracing';
import { loadConfig, ConfigError } from '../src/config';
import { createPool } from '../src/db/pool';
import { temporalTargetOrExplain } from '../src/temporal-connect';
import { awaitDependency, databaseDependency, databaseLabel, describeNamespaceWithin, namespaceProblem, temporalTransient } from '../src/startup';
import { runMain } from '../src/run-main';
import { startLedgerRetention } from '../workers/ledger-retention';
import { prebuiltBundle } from '../workers/bundle';
import { workerOptions } from '../workers/options';
import { createSagaWorker } from '../workers/worker';
import { dataConverterOf, describePayloadCodec, payloadCodecSetting } from '../src/codec/settings';

const USAGE = `usage: npm run worker -- [--queues workflows,orders,inventory,payments,shipping]
                         [--concurrency N | ROLE=N,...] [--pollers N]
                         [--payments-per-second N] [--shutdown-grace MS] [--metrics-port PORT]

A worker process: polls the task queues given (all by default) and serves
/metrics, /healthz and /readyz on METRICS_HOST:METRICS_PORT (127.0.0.1:9464).
Needs DATABASE_URL, TEMPORAL_ADDRESS, PAYMENT_PROVIDER_URL and CARRIER_URL
(\`npm run stack\` prints them). Each flag has an environment variable
(SAGAFLOW_WORKER_QUEUES, SAGAFLOW_WORKER_CONCURRENCY, SAGAFLOW_WORKER_POLLERS,
PAYMENTS_PER_SECOND, SHUTDOWN_GRACE_MS, METRICS_PORT); the flag wins.
SIGTERM or SIGINT stops polling, lets in-flight activities finish within the
grace time, and exits 0.`;

/**
 * A worker process: polls the task queues it is given (all by default).
 * SIGINT/SIGTERM stop polling, let in-flight activities finish within the grace
 * time, and exit 0.
 */
runMain(USAGE, async () => {
  const started = Date.now();
  // A signal before the worker polls ends the process cleanly: start-up stops at its next step
  // (a wait for Temporal included) and what was opened is closed. Nothing was taken from a queue.
  const startup = new AbortController();
  const stopEarly = (signal: NodeJS.Signals) => {
    if (!startup.signal.aborted) startup.abort(signal);
  };
  process.once('SIGINT', stopEarly);
  process.once('SIGTERM', stopEarly);
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
  // Before anything connects: a worker without its payload keys must not start.
  const payloadCodec = payloadCodecSetting(config);
  const logger = createLogger({ service: 'sagaflow-worker', level: config.LOG_LEVEL });
  const log = lineLogger(logger);
  // Temporal Core exports its runtime metrics on a private port; our /metrics appends them.
  const corePort = await freePort();
  Runtime.install({
    // The SDK's log calls and, forwarded, Core's own (warnings and errors) go through our logger.
    logger: new TemporalLogger(logger),
    // Prometheus conventions, as the SDK dashboards expect: counters end in _total, durations are seconds named so.
    telemetryOptions: {
      logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} },
      metrics: {
        prometheus: { bindAddress: `127.0.0.1:${corePort}`, countersTotalSuffix: true, unitSuffix: true, useSecondsForDurations: true },
      },
    },
  });
  const metrics = new SagaMetrics({ processMetrics: true, role: 'worker' });
  const tracing = startTracing({
    endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT,
    serviceName: config.OTEL_SERVICE_NAME ?? 'sagaflow-worker',
  });
  // Ready once the workers poll, and as long as they run and their database and Temporal answer.
  // Until then /readyz names what it waits for.
  const target = temporalTargetOrExplain();
  const address = target.connectionOptions.address;
  const databaseUrl = config.DATABASE_URL!;
  const pending: Record<string, string> = {
    database: `waiting for ${databaseLabel(databaseUrl)}`,
    temporal: `waiting for Temporal at ${address}`,
  };
  const waitingFor = (): Checks => ({
    ...Object.fromEntries(Object.entries(pending).map(([name, why]) => [name, () => Promise.reject(new Error(why))])),
    worker: () => Promise.reject(new Error('starting')),
  });
  let readiness: () => Checks = waitingFor;
  const metricsServer = await serveMetrics(metrics, {
    host: config.METRICS_HOST,
    port: opts.metricsPort,
    extraUrl: `http://127.0.0.1:${corePort}/metrics`,
    readiness: () => readiness(),
  });
  const db = createPool({ connectionString: databaseUrl, max: config.DATABASE_POOL_MAX });
  let connection: NativeConnection | undefined;
  const closeOpened = async () => {
    await connection?.close().catch(() => undefined);
    await metricsServer.close();
    await db.end().catch(() => undefined);
  };
  const stoppedDuringStartup = async (): Promise<boolean> => {
    if (!startup.signal.aborted) return false;
    await closeOpened();
    logger.info({ signal: startup.signal.reason as string, pid: process.pid }, 'signal during start-up: stopped before polling');
    return true;
  };
  // PostgreSQL and Temporal (its namespace) side by side, each waited for while it is down; a
  // database that refuses this worker or a namespace that does not exist ends it (runMain).
  try {
    await Promise.all([
      awaitDependency(
        databaseDependency(databaseUrl, async () => {
          await db.query('SELECT 1');
        }),
        pending,
        { log, signal: startup.signal },
      ),
      awaitDependency(
        {
          name: 'temporal',
          what: `Temporal at ${address}`,
          attempt: async () => {
            connection ??= await NativeConnection.connect(target.connectionOptions);
            await describeNamespaceWithin(connection, target.namespace, 3000);
          },
          transient: temporalTransient,
          fatal: (err) => namespaceProblem(err, target.namespace, address),
        },
        pending,
        { log, signal: startup.signal },
      ),
    ]);
  } catch (err) {
    await closeOpened();
    throw err;
  }
  if (await stoppedDuringStartup()) return 0;
  if (!connection) throw new Error('no Temporal connection'); // unreachable: only an abort ends the wait without one
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
    log,
    plugins: tracing ? [tracing.plugin] : [],
    dataConverter: dataConverterOf(payloadCodec),
    deps: {
      db,
      paymentProviderUrl: config.PAYMENT_PROVIDER_URL!,
      carrierUrl: config.CARRIER_URL!,
      providerTimeoutMs: config.PROVIDER_TIMEOUT_MS,
    },
  });
  if (await stoppedDuringStartup()) return 0;
  // From here the SDK's own signal handling drains the running worker.
  process.removeListener('SIGINT', stopEarly);
  process.removeListener('SIGTERM', stopEarly);
  const running = connection;
  const checks: Checks = {
    database: () => db.query('SELECT 1'),
    temporal: () => running.withDeadline(Date.now() + 1500, () => running.workflowService.getSystemInfo({})),
    worker: async () => {
      const state = worker.getState();
      if (state !== 'RUNNING') throw new Error(`worker ${state.toLowerCase()}`);
    },
  };
  readiness = () => checks;
  logger.info(
    {
      queues: worker.workers.map((w) => w.taskQueue),
      bundle: opts.queues.includes('workflows') ? (bundle ? 'prebuilt' : 'built at start') : 'none',
      startMs: Date.now() - started,
      metrics: metricsServer.url,
      tracing: tracing ? config.OTEL_EXPORTER_OTLP_ENDPOINT : 'off',
      payloadEncryption: describePayloadCodec(payloadCodec),
      temporalUi: config.TEMPORAL_UI_URL ?? 'set TEMPORAL_UI_URL to print it here',
      pid: process.pid,
    },
    'worker ready',
  );
  const stopRetention = startLedgerRetention({
    db,
    retentionMs: config.LEDGER_RETENTION_DAYS * 86_400_000,
    intervalMs: config.LEDGER_PURGE_INTERVAL_MINUTES * 60_000,
    metrics,
    log,
  });
  await worker.run();
  stopRetention();
  await metricsServer.close();
  await tracing?.shutdown();
  await connection.close();
  await db.end();
  logger.info({ pid: process.pid }, 'worker stopped');
});

import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { loadConfig, ConfigError } from '../src/config';
import { createPool } from '../src/db/pool';
import { runMain } from '../src/cli/run';
import { prebuiltBundle } from './bundle';
import { workerOptions } from './options';
import { createSagaWorker } from './worker';

/**
 * A worker process: polls the task queues it is given (all by default).
 * SIGINT/SIGTERM stop polling, let in-flight activities finish within the grace
 * time, and exit 0.
 */
runMain(async () => {
  const started = Date.now();
  const config = loadConfig();
  const opts = workerOptions(process.argv.slice(2), config);
  const missing = (['DATABASE_URL', 'TEMPORAL_ADDRESS', 'PAYMENT_PROVIDER_URL', 'CARRIER_URL'] as const).filter(
    (k) => !config[k],
  );
  if (missing.length) {
    throw new ConfigError(
      missing.map((variable) => ({ variable, message: 'required by a worker (`npm run stack` prints all four)' })),
    );
  }
  Runtime.install({ logger: new DefaultLogger(config.LOG_LEVEL === 'debug' ? 'DEBUG' : 'INFO') });
  const db = createPool({ connectionString: config.DATABASE_URL! });
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS! });
  const bundle = config.SAGAFLOW_WORKFLOW_BUNDLE ? { codePath: config.SAGAFLOW_WORKFLOW_BUNDLE } : prebuiltBundle();
  const worker = await createSagaWorker({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    queues: opts.queues,
    concurrency: opts.concurrency,
    paymentsPerSecond: opts.paymentsPerSecond,
    shutdownGraceTime: opts.shutdownGraceMs,
    workflowBundle: opts.queues.includes('workflows') ? bundle : undefined,
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
      pid: process.pid,
    }),
  );
  await worker.run();
  await connection.close();
  await db.end();
  console.log(JSON.stringify({ msg: 'worker stopped', pid: process.pid }));
});

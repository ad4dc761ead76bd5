import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { loadConfig, ConfigError } from '../src/config';
import { createPool } from '../src/db/pool';
import { runMain } from '../src/cli/run';
import { createSagaWorker } from './worker';

/**
 * A worker process: runs the order saga and its activities on one task queue.
 * SIGINT/SIGTERM stop polling and let in-flight tasks finish before exit.
 */
runMain(async () => {
  const config = loadConfig();
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
  const worker = await createSagaWorker({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    deps: {
      db,
      paymentProviderUrl: config.PAYMENT_PROVIDER_URL!,
      carrierUrl: config.CARRIER_URL!,
      providerTimeoutMs: config.PROVIDER_TIMEOUT_MS,
    },
  });
  console.log(`worker polling task queue "${config.TEMPORAL_TASK_QUEUE}" on ${config.TEMPORAL_ADDRESS}`);
  await worker.run();
  await connection.close();
  await db.end();
});

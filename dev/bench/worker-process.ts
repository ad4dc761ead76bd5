/**
 * A benchmark worker process (dev/bench/run.ts spawns it; not for production):
 *
 *   worker-process.ts sample naive|no-ledger|floor|floor-local
 *     the comparison sagas of ./workflows.ts on TEMPORAL_TASK_QUEUE and its activity queues,
 *     through createQueueWorkers as the order saga's workers run;
 *   worker-process.ts eager
 *     the order saga's workers (createSagaWorker, all queues) and, on the same NativeConnection,
 *     a client that starts each saga the driver sends (IPC) with eager workflow start, so the
 *     server may hand the first workflow task back in the start's answer to this process.
 *
 * Needs DATABASE_URL, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE,
 * PAYMENT_PROVIDER_URL, CARRIER_URL; BENCH_WORKFLOW_BUNDLE (a prebuilt bundle of the workflow code
 * it runs) and BENCH_POLLERS are optional. SIGTERM stops it.
 */
import { Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { activitiesBySystem } from '../../activities';
import { createPool } from '../../src/db/pool';
import { dataConverterFromEnv } from '../../src/codec/settings';
import { startOrderSaga } from '../../src/orders/start';
import { createQueueWorkers, createSagaWorker, type SagaWorker } from '../../workers/worker';
import { noopActivities, noopAllLocalActivities, passThroughLedger } from './activities';
import { onStop, runChild, serveSagas } from './processes';

async function main(): Promise<void> {
  const [mode, saga] = process.argv.slice(2);
  const env = (name: string) => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set`);
    return v;
  };
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const db = createPool({ connectionString: env('DATABASE_URL'), max: 10 });
  const connection = await NativeConnection.connect({ address: env('TEMPORAL_ADDRESS') });
  const namespace = process.env.TEMPORAL_NAMESPACE || 'default';
  const taskQueue = env('TEMPORAL_TASK_QUEUE');
  const dataConverter = dataConverterFromEnv();
  const deps = { db, paymentProviderUrl: env('PAYMENT_PROVIDER_URL'), carrierUrl: env('CARRIER_URL'), providerTimeoutMs: 5000 };
  const bundle = process.env.BENCH_WORKFLOW_BUNDLE;
  const common = {
    connection,
    namespace,
    taskQueue,
    deps,
    dataConverter,
    handleSignals: false,
    pollers: process.env.BENCH_POLLERS ? Number(process.env.BENCH_POLLERS) : undefined,
    workflowBundle: bundle ? { codePath: bundle } : undefined,
  };
  let worker: SagaWorker;
  if (mode === 'sample') {
    const activities =
      saga === 'floor' ? noopActivities() : saga === 'floor-local' ? noopAllLocalActivities() : activitiesBySystem(deps, passThroughLedger(db));
    if (!['naive', 'no-ledger', 'floor', 'floor-local'].includes(saga ?? '')) throw new Error(`unknown comparison saga ${saga}`);
    worker = await createQueueWorkers({ ...common, activities }, require.resolve('./workflows'));
  } else if (mode === 'eager') {
    worker = await createSagaWorker(common);
    // Eager start needs the client on the worker's own NativeConnection: the SDK hands the
    // workflow task the start's answer carries to a worker of that connection.
    const client = new Client({ connection, namespace, dataConverter });
    serveSagas(async (order) => {
      const handle = await startOrderSaga(client, order, taskQueue, { eager: true });
      const result = await handle.result();
      if (result.status !== 'completed') throw new Error(`${order.orderId}: ${result.status}`);
      return { eagerlyStarted: (handle as { eagerlyStarted?: boolean }).eagerlyStarted === true };
    });
  } else {
    throw new Error(`usage: worker-process.ts sample naive|no-ledger|floor|floor-local | eager`);
  }
  const running = worker.run();
  onStop(() => worker.shutdown());
  // Polling now; the workflow worker's first task may still be warming its bundle.
  process.send?.({ type: 'ready' });
  await running;
  await connection.close();
  await db.end();
}

runChild(main);

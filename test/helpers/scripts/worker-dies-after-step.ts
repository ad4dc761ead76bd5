/**
 * Run as its own process by the lost-task tests: the saga's
 * workflow worker (its local activities run in it: the database steps, and every
 * step of an orderSagaV2) with one
 * step changed to SIGKILL the process the moment its transaction has committed.
 * The workflow task that ran the steps so far never completes, so the server's
 * history holds none of them while their rows are in PostgreSQL: the window
 * between a local activity's commit and its workflow task's completion.
 *
 * DIE_AFTER_STEP names the activity (e.g. checkFraud, chargePayment, or a
 * compensation such as releaseInventory); the process dies once it has settled, whether it succeeded or
 * failed (a business failure is recorded before it is thrown). WORKFLOW_BUNDLE, if
 * set, is a prebuilt workflow bundle to start from. The rest of the environment is
 * a worker's (DATABASE_URL, TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE).
 */
import { NativeConnection } from '@temporalio/worker';
import { activitiesBySystem } from '../../../activities';
import { createPool } from '../../../src/db/pool';
import { createSagaWorker } from '../../../workers/worker';

async function main(): Promise<void> {
  const step = process.env.DIE_AFTER_STEP!;
  const db = createPool({ connectionString: process.env.DATABASE_URL! });
  const deps = {
    db,
    paymentProviderUrl: process.env.PAYMENT_PROVIDER_URL ?? 'http://127.0.0.1:1',
    carrierUrl: process.env.CARRIER_URL ?? 'http://127.0.0.1:1',
    providerTimeoutMs: 3000,
  };
  const systems = activitiesBySystem(deps);
  const role = (['orders', 'inventory', 'payments', 'shipping'] as const).find((r) => step in systems[r]);
  const real = role && (systems[role] as Record<string, (input: unknown) => Promise<unknown>>)[step];
  if (!role || !real) throw new Error(`no step named ${step}`);
  const dying = {
    ...systems[role],
    [step]: async (input: unknown) => {
      try {
        await real(input);
      } finally {
        process.kill(process.pid, 'SIGKILL');
      }
      await new Promise(() => undefined);
    },
  };
  const connection = await NativeConnection.connect({ address: process.env.TEMPORAL_ADDRESS! });
  const worker = await createSagaWorker({
    connection,
    namespace: process.env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: process.env.TEMPORAL_TASK_QUEUE!,
    deps,
    queues: ['workflows'],
    workflowBundle: process.env.WORKFLOW_BUNDLE ? { codePath: process.env.WORKFLOW_BUNDLE } : undefined,
    activities: { ...systems, [role]: dying },
    handleSignals: false,
  });
  process.stdout.write('worker ready\n');
  await worker.run();
}

main().catch((err: unknown) => {
  process.stderr.write(`main failed: ${String(err)}\n`);
  process.exit(3);
});

/**
 * Run as its own process by test/trip/trip-lost-task.test.ts: a trip worker
 * (the workflow, its local database steps and its activities) with one activity
 * changed to SIGKILL the process the moment it has settled (committed, or failed
 * with its failure recorded). The workflow task that ran the local steps so far
 * never completes: the server's history holds none of them while their rows are
 * in PostgreSQL.
 *
 * DIE_AFTER_STEP names the activity (holdItem, releaseItem, recordTrip,
 * closeTrip); DIE_AFTER_KIND, if set, only the call for that hold (flight, hotel,
 * car). WORKFLOW_BUNDLE is a prebuilt bundle of the trip workflows. The rest is
 * DATABASE_URL (with the test's schema), TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE and
 * PAYMENT_PROVIDER_URL.
 */
import { NativeConnection } from '@temporalio/worker';
import { createTripActivities, createTripWorker } from '../../../examples/trip-booking';
import { createPool } from '../../../src/db/pool';
import { dataConverterFromEnv } from '../../../src/codec/settings';

async function main(): Promise<void> {
  const step = process.env.DIE_AFTER_STEP!;
  const kind = process.env.DIE_AFTER_KIND;
  const db = createPool({ connectionString: process.env.DATABASE_URL! });
  const deps = { db, paymentProviderUrl: process.env.PAYMENT_PROVIDER_URL!, providerTimeoutMs: 3000 };
  const activities = createTripActivities(deps) as unknown as Record<string, (input: { kind?: string }) => Promise<unknown>>;
  const real = activities[step];
  if (!real) throw new Error(`no trip activity named ${step}`);
  const dying = {
    ...activities,
    [step]: async (input: { kind?: string }) => {
      if (kind && input.kind !== kind) return real(input);
      try {
        return await real(input);
      } finally {
        process.kill(process.pid, 'SIGKILL');
      }
    },
  };
  const connection = await NativeConnection.connect({ address: process.env.TEMPORAL_ADDRESS! });
  const worker = await createTripWorker({
    connection,
    namespace: process.env.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: process.env.TEMPORAL_TASK_QUEUE!,
    deps,
    workerOptions: {
      workflowsPath: undefined,
      workflowBundle: { codePath: process.env.WORKFLOW_BUNDLE! },
      activities: dying,
      // The test's client seals payloads with the run's key (SAGAFLOW_PAYLOAD_KEYS); so does this worker.
      dataConverter: dataConverterFromEnv(),
    },
  });
  process.stdout.write('worker ready\n');
  await worker.run();
}

main().catch((err: unknown) => {
  process.stderr.write(`main failed: ${String(err)}\n`);
  process.exit(3);
});

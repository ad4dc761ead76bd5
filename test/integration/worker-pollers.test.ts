/**
 * The pollers setting reaches the SDK through the option it reads (its poller behavior): the
 * maxConcurrent…TaskPolls options alone were ignored by @temporalio/worker, so the setting did
 * nothing while the README said it capped the polls.
 */
import { createSagaWorker } from '../../workers/worker';
import { createTestContext, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext('pollers');
});

afterAll(async () => {
  await ctx?.close();
});

test('--pollers N caps every queue of the worker at N long polls; unset, the SDK keeps its own', async () => {
  const base = { connection: ctx.nativeConnection, namespace: ctx.namespace, deps: ctx.deps, handleSignals: false };
  const capped = await createSagaWorker({ ...base, taskQueue: uniqueId('pollers'), pollers: 3 });
  const plain = await createSagaWorker({ ...base, taskQueue: uniqueId('pollers-default'), queues: ['workflows'] });
  const stops = [ctx.startWorker(capped), ctx.startWorker(plain)];
  try {
    expect(capped.workers).toHaveLength(5);
    for (const { role, worker } of capped.workers) {
      const behavior = role === 'workflows' ? worker.options.workflowTaskPollerBehavior : worker.options.activityTaskPollerBehavior;
      expect({ role, behavior }).toEqual({ role, behavior: { type: 'simple-maximum', maximum: 3 } });
    }
    expect(plain.workers[0]!.worker.options.workflowTaskPollerBehavior).toEqual({ type: 'simple-maximum', maximum: 10 });
  } finally {
    for (const stop of stops) await stop();
  }
});

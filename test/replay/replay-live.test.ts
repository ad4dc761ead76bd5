import { replayFromServer } from '../../packages/toolkit/src/replay/live';
import { startOrderSaga } from '../../src/orders/start';
import { createSagaWorker, orderSagaReplayOptions, type SagaWorker } from '../../workers/worker';
import { createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;
let worker: SagaWorker;
const taskQueue = uniqueId('replay-live');

beforeAll(async () => {
  ctx = await createTestContext('replaylive');
  worker = await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps });
  ctx.startWorker(worker);
});
afterAll(async () => {
  await ctx?.close();
});

async function runSagas(n: number) {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const sku = uniqueId('sku');
    await seedInventory(ctx.db, { [sku]: 3 });
    const handle = await startOrderSaga(
      ctx.client,
      {
        orderId: uniqueId('live'),
        customerId: 'c',
        items: [{ sku, quantity: i === 0 ? 9 : 1 }],
        amount: { amountMinor: 1200, currency: 'EUR' },
        paymentToken: 'tok_visa',
        shippingAddress: { name: 'A', line1: 'B', city: 'C', postalCode: 'D', country: 'DE' },
      },
      taskQueue,
    );
    await handle.result();
    ids.push(handle.workflowId);
  }
  return ids;
}

test('recent histories from a running server replay against the current build', async () => {
  const ids = await runSagas(3);
  const outcomes = await replayFromServer(ctx.client, `TaskQueue = '${taskQueue}'`, orderSagaReplayOptions());
  expect(outcomes.map((o) => o.workflowId).sort()).toEqual([...ids].sort());
  expect(outcomes.every((o) => o.ok && o.endingMatches === true)).toBe(true);
});

test('the same check fails against an incompatible build', async () => {
  const outcomes = await replayFromServer(ctx.client, `TaskQueue = '${taskQueue}'`, {
    ...orderSagaReplayOptions(),
    workflowsPath: require.resolve('./fixtures/changed-workflows'),
  });
  expect(outcomes.length).toBeGreaterThan(0);
  // The out-of-stock saga never reached payment, so only the others diverge from the changed code.
  expect(outcomes.filter((o) => !o.ok).length).toBeGreaterThanOrEqual(2);
  expect(outcomes.find((o) => !o.ok)?.errorName).toBe('DeterminismViolationError');
});

import { WorkflowUpdateFailedError } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { createSagaWorker } from '../../workers/worker';
import { startOrderSaga } from '../../src/orders/start';
import { reconcileOrder, reconcileStock } from '../../src/orders/reconcile';
import { readLedger } from '../../src/ledger/ledger';
import { cancelUpdate, statusQuery } from '../../workflows/order-saga';
import { Step } from '../../workflows/steps';
import type { OrderInput } from '../../workflows/types';
import { addFault, createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;
let worker: Worker;
const taskQueue = uniqueId('order-saga');

beforeAll(async () => {
  ctx = await createTestContext('saga');
  worker = await createSagaWorker({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue,
    deps: ctx.deps,
  });
  ctx.startWorker(worker);
});

afterAll(async () => {
  await ctx?.close();
});

function order(overrides: Partial<OrderInput> = {}): OrderInput {
  const sku = uniqueId('sku');
  return {
    orderId: uniqueId('o'),
    customerId: 'cust-1',
    items: [{ sku, quantity: 2 }],
    amount: { amountMinor: 4_990, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
    ...overrides,
  };
}

async function stockOf(sku: string) {
  return (await reconcileStock(ctx.db)).find((s) => s.sku === sku);
}

async function waitForStatus(handle: { query: (q: typeof statusQuery) => Promise<unknown> }, pred: (s: any) => boolean) {
  for (let i = 0; i < 200; i++) {
    const s = await handle.query(statusQuery);
    if (pred(s)) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('saga never reached the expected status');
}

test('success: every step applies once and the books balance', async () => {
  const o = order();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 5 });
  const handle = await startOrderSaga(ctx.client, o, taskQueue);
  const result = await handle.result();

  expect(result.status).toBe('completed');
  expect(result.completedSteps).toEqual([
    Step.recordOrder, Step.reserveInventory, Step.chargePayment, Step.createShipment, Step.completeOrder,
  ]);
  expect(result.compensations).toEqual([]);
  const books = await reconcileOrder(ctx.db, o.orderId);
  expect(books).toMatchObject({ status: 'completed', netChargedMinor: 4_990, activeShipments: 1, consumedUnits: 2, problems: [] });
  expect(await stockOf(o.items[0]!.sku)).toEqual({ sku: o.items[0]!.sku, onHand: 3, reserved: 0, held: 0 });
  const ledger = await readLedger(ctx.db, handle.workflowId);
  expect(ledger.map((r) => [r.step, r.state]).sort()).toEqual(
    [
      [Step.chargePayment, 'completed'],
      [Step.completeOrder, 'completed'],
      [Step.createShipment, 'completed'],
      [Step.recordOrder, 'completed'],
      [Step.reserveInventory, 'completed'],
    ].sort(),
  );
});

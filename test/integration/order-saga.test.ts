import { WorkflowUpdateFailedError } from '@temporalio/client';
import { createSagaWorker, type SagaWorker } from '../../workers/worker';
import { activitiesBySystem } from '../../activities';
import { startOrderSaga } from '../../src/orders/start';
import { reconcileStock } from '../../src/orders/audit';
import { reconcileOrder } from '../../dev/services/reconcile';
import { createLedger } from '../../packages/toolkit/src/ledger/ledger';
import { cancelUpdate, statusQuery } from '../../workflows/order-saga';
import { EXTERNAL_STEP_ATTEMPTS as SHIPMENT_ATTEMPTS } from '../../workflows/order/activity-options';
import { Step } from '../../workflows/order/steps';
import { ORDER_SAGA_V1_WORKFLOW_TYPE } from '../../workflows/order/definitions';
import type { OrderInput } from '../../workflows/order/types';
import { addFault, createTestContext, orderInput, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { until } from '../helpers/until';

let ctx: TestContext;
let worker: SagaWorker;
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

const order = orderInput;
/** The first workflow type: its charge and label on their own queues, interrupted by a cancel. */
const v1 = { workflowType: ORDER_SAGA_V1_WORKFLOW_TYPE };

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
    Step.recordOrder, Step.reserveInventory, Step.fraudCheck, Step.chargePayment, Step.createShipment, Step.completeOrder,
  ]);
  expect(result.compensations).toEqual([]);
  const books = await reconcileOrder(ctx.db, o.orderId);
  expect(books).toMatchObject({ status: 'completed', netChargedMinor: 4_990, activeShipments: 1, consumedUnits: 2, problems: [] });
  expect(await stockOf(o.items[0]!.sku)).toEqual({ sku: o.items[0]!.sku, onHand: 3, reserved: 0, held: 0 });
  const ledger = await createLedger(ctx.db).read(handle.workflowId);
  expect(ledger.map((r) => [r.step, r.state]).sort()).toEqual(
    [
      [Step.chargePayment, 'completed'],
      [Step.completeOrder, 'completed'],
      [Step.createShipment, 'completed'],
      [Step.fraudCheck, 'completed'],
      [Step.recordOrder, 'completed'],
      [Step.reserveInventory, 'completed'],
    ].sort(),
  );
});

async function expectReconciled(o: OrderInput, status: string) {
  const books = await reconcileOrder(ctx.db, o.orderId);
  expect(books.status).toBe(status);
  expect(books.problems).toEqual([]);
  return books;
}

test('sagas carry search attributes: findable by order ID, with their final status', async () => {
  const o = order({ paymentToken: 'tok_decline' });
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  await (await startOrderSaga(ctx.client, o, taskQueue)).result();
  let found: string[] = [];
  // Visibility is eventually consistent.
  for (let i = 0; i < 50 && found.length === 0; i++) {
    found = [];
    for await (const wf of ctx.client.workflow.list({ query: `OrderId = '${o.orderId}' AND SagaStatus = 'compensated'` })) {
      found.push(wf.workflowId);
    }
    if (found.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  expect(found).toEqual([`order-${o.orderId}`]);
});

test('the Temporal UI shows what each saga is and how it ended: a summary, and current details naming the outcome', async () => {
  const o = order({ paymentToken: 'tok_decline' });
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  const handle = await startOrderSaga(ctx.client, o, taskQueue);
  await handle.result();
  const described = await handle.describe();
  // A compensated saga closes as Completed (it ended as designed); what happened is spelt out beside it.
  expect(described.status.name).toBe('COMPLETED');
  expect(await described.staticSummary()).toBe(`Order ${o.orderId}: ${o.items[0]!.quantity} items, 49.90 EUR`);
  expect(await described.staticDetails()).toContain(`**Items**: ${o.items[0]!.quantity} × ${o.items[0]!.sku}`);
  const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
  expect(metadata.currentDetails).toMatch(/^\*\*Compensated: a step failed for good and the steps before it were undone\*\*/);
  expect(metadata.currentDetails).toContain('Cause: PaymentDeclined');
  expect(metadata.currentDetails).toContain('Undone: charge-payment (done), fraud-check (done), reserve-inventory (done), record-order (done)');
});

test('out of stock: nothing is charged or shipped, and the order is failed', async () => {
  const o = order();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 1 });
  const result = await (await startOrderSaga(ctx.client, o, taskQueue)).result();

  expect(result).toMatchObject({ status: 'compensated', failure: { type: 'OutOfStock' } });
  expect(result.compensations.map((c) => [c.step, c.status])).toEqual([
    [Step.reserveInventory, 'done'],
    [Step.recordOrder, 'done'],
  ]);
  const books = await expectReconciled(o, 'failed');
  expect(books.netChargedMinor).toBe(0);
  expect(await stockOf(o.items[0]!.sku)).toEqual({ sku: o.items[0]!.sku, onHand: 1, reserved: 0, held: 0 });
  const payments = await ctx.db.query('SELECT 1 FROM payments WHERE order_id = $1', [o.orderId]);
  expect(payments.rowCount).toBe(0);
});

test('declined card: the stock is released and no money is held', async () => {
  const o = order({ paymentToken: 'tok_decline' });
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 4 });
  const result = await (await startOrderSaga(ctx.client, o, taskQueue)).result();

  expect(result).toMatchObject({ status: 'compensated', failure: { type: 'PaymentDeclined' } });
  expect(result.compensations.map((c) => c.step)).toEqual([
    Step.chargePayment, Step.fraudCheck, Step.reserveInventory, Step.recordOrder,
  ]);
  await expectReconciled(o, 'failed');
  expect(await stockOf(o.items[0]!.sku)).toEqual({ sku: o.items[0]!.sku, onHand: 4, reserved: 0, held: 0 });
  const pay = await ctx.db.query('SELECT status FROM payments WHERE order_id = $1', [o.orderId]);
  expect(pay.rows).toEqual([{ status: 'declined' }]);
  const res = await ctx.db.query(`SELECT status FROM reservations WHERE order_id = $1`, [o.orderId]);
  expect(res.rows).toEqual([{ status: 'released' }]);
});

test('fraud suspected: stopped before any money moves, the stock released', async () => {
  const o = order({ paymentToken: 'tok_fraud' });
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  const handle = await startOrderSaga(ctx.client, o, taskQueue);
  const result = await handle.result();

  expect(result).toMatchObject({ status: 'compensated', failure: { type: 'FraudSuspected' } });
  expect(result.compensations.map((c) => c.step)).toEqual([Step.fraudCheck, Step.reserveInventory, Step.recordOrder]);
  await expectReconciled(o, 'failed');
  const charges = await ctx.db.query(`SELECT 1 FROM provider_charges WHERE idempotency_key LIKE $1`, [`order-${o.orderId}/%`]);
  expect(charges.rowCount).toBe(0);
  const fraud = await ctx.db.query(`SELECT state, error->>'type' AS type FROM step_ledger WHERE key = $1`, [
    `${handle.workflowId}/${Step.fraudCheck}`,
  ]);
  expect(fraud.rows).toEqual([{ state: 'cancelled', type: 'FraudSuspected' }]);
});

test('an approved fraud check is voided when a later step fails', async () => {
  const o = order({ paymentToken: 'tok_decline' });
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  await (await startOrderSaga(ctx.client, o, taskQueue)).result();
  const fraud = await ctx.db.query('SELECT decision, status FROM fraud_checks WHERE order_id = $1', [o.orderId]);
  expect(fraud.rows).toEqual([{ decision: 'approved', status: 'voided' }]);
});

test('carrier outage: retried to the bound, then the charge is refunded and the label voided', async () => {
  const o = order();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  // Down for every attempt of the shipment step, then back: its undo asks for the label again under
  // its key (a real carrier keeps nothing for a key it never saw), so the carrier must answer.
  await addFault(ctx.carrier.url, { kind: 'error', path: '/shipments', keyPrefix: `order-${o.orderId}/`, times: SHIPMENT_ATTEMPTS });
  const result = await (await startOrderSaga(ctx.client, o, taskQueue)).result();

  expect(result).toMatchObject({ status: 'compensated', failure: { type: 'ProviderUnavailable' } });
  expect(result.compensations.map((c) => c.step)).toEqual([
    Step.createShipment, Step.chargePayment, Step.fraudCheck, Step.reserveInventory, Step.recordOrder,
  ]);
  await expectReconciled(o, 'failed');
  const charge = await ctx.db.query(`SELECT status FROM provider_charges WHERE idempotency_key LIKE $1`, [`order-${o.orderId}/%`]);
  expect(charge.rows).toEqual([{ status: 'refunded' }]);
  const pay = await ctx.db.query('SELECT status FROM payments WHERE order_id = $1', [o.orderId]);
  expect(pay.rows).toEqual([{ status: 'refunded' }]);
  // The void asked for the label under its key, and voided what that made: a label request arriving
  // late for this key is answered with the voided label, and the ledger's tombstone records nothing.
  const label = await ctx.db.query(`SELECT status FROM carrier_shipments WHERE idempotency_key = $1`, [
    `order-${o.orderId}/${Step.createShipment}`,
  ]);
  expect(label.rows).toEqual([{ status: 'voided' }]);
  expect(await stockOf(o.items[0]!.sku)).toEqual({ sku: o.items[0]!.sku, onHand: 2, reserved: 0, held: 0 });
});

test('orderSaga: customer cancel before the pivot: the in-flight charge is undone and the order cancelled', async () => {
  const o = order();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 3 });
  await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 1500, keyPrefix: `order-${o.orderId}/` });
  const handle = await startOrderSaga(ctx.client, o, taskQueue, v1);
  await waitForStatus(handle, (s) => s.currentStep === Step.chargePayment);

  await expect(handle.executeUpdate(cancelUpdate, { args: [{ reason: 'customer changed their mind' }] })).resolves.toEqual({
    accepted: true,
  });
  const result = await handle.result();

  expect(result).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled', message: 'customer changed their mind' } });
  expect(result.completedSteps).toEqual([Step.recordOrder, Step.reserveInventory, Step.fraudCheck]);
  // The saga waited for the cancelled charge to end before it compensated and closed: no activity
  // is left pending on the closed run (the UI would show one), none completes after it.
  const { events } = await handle.fetchHistory();
  const scheduled = events!.filter((e) => e.activityTaskScheduledEventAttributes).map((e) => Number(e.eventId));
  const ended = new Set(
    events!.flatMap((e) => {
      const a = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskCanceledEventAttributes ?? e.activityTaskTimedOutEventAttributes;
      return a ? [Number(a.scheduledEventId)] : [];
    }),
  );
  expect(scheduled.filter((id) => !ended.has(id))).toEqual([]);
  // Let any slow charge attempt land; the tombstone must make it apply nothing.
  await new Promise((r) => setTimeout(r, 2000));
  const books = await expectReconciled(o, 'cancelled');
  expect(books.netChargedMinor).toBe(0);
  expect(await stockOf(o.items[0]!.sku)).toEqual({ sku: o.items[0]!.sku, onHand: 3, reserved: 0, held: 0 });
  const fwd = await ctx.db.query(`SELECT state FROM step_ledger WHERE key = $1`, [`${handle.workflowId}/${Step.chargePayment}`]);
  expect(fwd.rows).toEqual([{ state: 'cancelled' }]);
});

test('orderSaga: a cancel while a charge attempt is still running: the saga waits for it, so no activity outlives the closed run', async () => {
  // A payments worker whose charge attempt takes 3 s before it reaches the ledger, without heartbeating.
  const slowQueue = uniqueId('slow-charge');
  const systems = activitiesBySystem(ctx.deps);
  let attemptStarted = false;
  let attemptEnded = 0;
  const slow = await createSagaWorker({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue: slowQueue,
    deps: ctx.deps,
    activities: {
      ...systems,
      payments: {
        ...systems.payments,
        chargePayment: async (input: Parameters<typeof systems.payments.chargePayment>[0]) => {
          attemptStarted = true;
          await new Promise((r) => setTimeout(r, 3000));
          try {
            return await systems.payments.chargePayment(input);
          } finally {
            attemptEnded = Date.now();
          }
        },
      },
    },
  });
  const stop = ctx.startWorker(slow);
  try {
    const o = order();
    await seedInventory(ctx.db, { [o.items[0]!.sku]: 3 });
    const handle = await startOrderSaga(ctx.client, o, slowQueue, v1);
    await waitForStatus(handle, (st) => st.currentStep === Step.chargePayment);
    // Scheduled is not running: a charge cancelled before a worker took it never starts at all.
    await until(async () => attemptStarted, (v) => v, 'the charge attempt to start');
    await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'changed my mind' }] });
    const result = await handle.result();
    const closedAt = Date.now();
    expect(result.status).toBe('cancelled');
    // The attempt ended before the saga closed; in the history every activity has its end.
    expect(attemptEnded).toBeGreaterThan(0);
    expect(attemptEnded).toBeLessThanOrEqual(closedAt);
    const { events } = await handle.fetchHistory();
    const scheduled = events!.filter((e) => e.activityTaskScheduledEventAttributes).map((e) => Number(e.eventId));
    const ended = new Set(
      events!.flatMap((e) => {
        const a =
          e.activityTaskCompletedEventAttributes ??
          e.activityTaskFailedEventAttributes ??
          e.activityTaskCanceledEventAttributes ??
          e.activityTaskTimedOutEventAttributes;
        return a ? [Number(a.scheduledEventId)] : [];
      }),
    );
    expect(scheduled.filter((id) => !ended.has(id))).toEqual([]);
    // Whatever the late attempt did was undone: no money kept, no stock held.
    const books = await expectReconciled(o, 'cancelled');
    expect(books.netChargedMinor).toBe(0);
    expect(await stockOf(o.items[0]!.sku)).toEqual({ sku: o.items[0]!.sku, onHand: 3, reserved: 0, held: 0 });
  } finally {
    await stop();
  }
});

test('orderSaga: cancel after the pivot started is refused with a reason, and the saga completes', async () => {
  const o = order();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  await addFault(ctx.carrier.url, { kind: 'latency', latency_ms: 1000, keyPrefix: `order-${o.orderId}/` });
  const handle = await startOrderSaga(ctx.client, o, taskQueue, v1);
  await waitForStatus(handle, (s) => s.pivotStarted);

  const refused = await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'too late' }] }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
  expect(String((refused as WorkflowUpdateFailedError).cause?.message)).toMatch(/point of no return/);

  const result = await handle.result();
  expect(result.status).toBe('completed');
  await expectReconciled(o, 'completed');
});

test('orderSaga: a Temporal cancel (temporal workflow cancel) during the pivot does not abort it: the label is made and the saga completes', async () => {
  const o = order();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  await addFault(ctx.carrier.url, { kind: 'latency', latency_ms: 1500, path: '/shipments', keyPrefix: `order-${o.orderId}/` });
  const handle = await startOrderSaga(ctx.client, o, taskQueue, v1);
  await waitForStatus(handle, (s) => s.pivotStarted);
  await handle.cancel();

  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', compensations: [] });
  expect(result.completedSteps).toContain(Step.createShipment);
  const books = await expectReconciled(o, 'completed');
  expect(books).toMatchObject({ netChargedMinor: 4_990, activeShipments: 1 });
  const label = await ctx.db.query(`SELECT status FROM carrier_shipments WHERE idempotency_key = $1`, [
    `order-${o.orderId}/${Step.createShipment}`,
  ]);
  expect(label.rows).toEqual([{ status: 'created' }]);
});

test('orderSaga: a Temporal cancel before the pivot is a cancel: the charge in flight is refunded and the order cancelled', async () => {
  const o = order();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 1500, path: '/charges', keyPrefix: `order-${o.orderId}/` });
  const handle = await startOrderSaga(ctx.client, o, taskQueue, v1);
  await waitForStatus(handle, (s) => s.currentStep === Step.chargePayment);
  await handle.cancel();

  // A cancel through Temporal is a cancel, as the cancel update is: the saga unwinds as cancelled.
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled' } });
  expect(result.compensations.map((c) => c.step)).toEqual([Step.chargePayment, Step.fraudCheck, Step.reserveInventory, Step.recordOrder]);
  const books = await expectReconciled(o, 'cancelled');
  expect(books).toMatchObject({ netChargedMinor: 0, activeShipments: 0 });
  expect(await stockOf(o.items[0]!.sku)).toEqual({ sku: o.items[0]!.sku, onHand: 2, reserved: 0, held: 0 });
});

test('a second start of the same order attaches to the running saga', async () => {
  const o = order();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 500, keyPrefix: `order-${o.orderId}/` });
  const first = await startOrderSaga(ctx.client, o, taskQueue);
  const second = await startOrderSaga(ctx.client, o, taskQueue);
  const firstRun = (await first.describe()).runId;
  expect((await second.describe()).runId).toBe(firstRun);
  await first.result();
  // After it closed, a third start still finds the same saga rather than starting a new one.
  const third = await startOrderSaga(ctx.client, o, taskQueue);
  expect((await third.describe()).runId).toBe(firstRun);

  const runs = await ctx.client.workflow.count(`WorkflowId = "${first.workflowId}"`);
  expect(runs.count).toBe(1);
  await expectReconciled(o, 'completed');
  const charges = await ctx.db.query(`SELECT count(*)::int AS n FROM provider_charges WHERE idempotency_key LIKE $1`, [
    `order-${o.orderId}/%`,
  ]);
  expect(charges.rows[0].n).toBe(1);
});

test('provider commits then drops the response: the retry charges once and the saga completes', async () => {
  const o = order();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 2 });
  await addFault(ctx.payment.url, { kind: 'drop', path: '/charges', keyPrefix: `order-${o.orderId}/`, times: 1 });
  await addFault(ctx.payment.url, { kind: 'error', path: '/charges', keyPrefix: `order-${o.orderId}/`, times: 1 });
  const result = await (await startOrderSaga(ctx.client, o, taskQueue)).result();

  expect(result.status).toBe('completed');
  await expectReconciled(o, 'completed');
  const charges = await ctx.db.query(`SELECT status FROM provider_charges WHERE idempotency_key LIKE $1`, [`order-${o.orderId}/%`]);
  expect(charges.rows).toEqual([{ status: 'succeeded' }]);
});

test('bad input is refused before anything is started or written', async () => {
  const o = order({ amount: { amountMinor: 12.5, currency: 'EUR' } });
  await expect(startOrderSaga(ctx.client, o, taskQueue)).rejects.toThrow(/amount.amountMinor/);
  const rows = await ctx.db.query('SELECT 1 FROM orders WHERE id = $1', [o.orderId]);
  expect(rows.rowCount).toBe(0);
  const runs = await ctx.client.workflow.count(`WorkflowId = "order-${o.orderId}"`);
  expect(runs.count).toBe(0);
});

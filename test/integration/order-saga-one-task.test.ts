/**
 * orderSagaV2, the order saga as it starts today: every step, the provider and carrier calls too,
 * runs as a local activity in the workflow's worker, so a saga is one workflow task. Against the
 * real Temporal dev server and real PostgreSQL: what its history holds, and when a cancel is seen
 * and what it comes to, at each moment it can arrive.
 */
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { createSagaWorker } from '../../workers/worker';
import { startOrderSaga } from '../../src/orders/start';
import { cancelOrder } from '../../src/api/cancel-order';
import { findOrder } from '../../src/orders/repository';
import { reconcileOrder } from '../../dev/services/reconcile';
import { cancelUpdate } from '../../workflows/order-saga';
import { ORDER_SAGA_WORKFLOW_TYPE, type OrderSagaWorkflow } from '../../workflows/order/definitions';
import { orderWorkflowId } from '../../workflows/order/ids';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { addFault, createTestContext, databaseUrl, orderInput, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { countingMessages } from '../helpers/pg-messages';
import { createPool } from '../../src/db/pool';
import { until } from '../helpers/until';

jest.setTimeout(120_000);

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext('one_task');
});

afterAll(async () => {
  await ctx?.close();
});

/** A worker on a queue of the test's own, started when the test says. */
async function worker(taskQueue: string): Promise<() => Promise<void>> {
  const w = await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps });
  return ctx.startWorker(w);
}

async function ledgerOf(workflowId: string) {
  const rows = await ctx.db.query<{ key: string; state: string; undone: string | null }>(
    `SELECT key, state, undone FROM step_ledger WHERE workflow_id = $1 ORDER BY key`,
    [workflowId],
  );
  return Object.fromEntries(rows.rows.map((r) => [r.key.slice(workflowId.length + 1), [r.state, r.undone]]));
}

async function books(o: OrderInput) {
  const b = await reconcileOrder(ctx.db, o.orderId);
  expect(b.problems).toEqual([]);
  return b;
}

/** The cancel update as a client sends it: accepted, or refused with the saga's reason. */
async function sendCancel(handle: WorkflowHandle, reason: string): Promise<string> {
  try {
    await handle.executeUpdate(cancelUpdate, { args: [{ reason }] });
    return 'accepted';
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) return `refused: ${err.cause?.message ?? err.message}`;
    throw err;
  }
}

test('a saga is one workflow task: no activity task, no patch marker, one search-attribute upsert, and the books balance', async () => {
  const queue = uniqueId('one-task');
  const stop = await worker(queue);
  try {
    const o = orderInput();
    await seedInventory(ctx.db, { [o.items[0]!.sku]: 3 });
    const handle = await startOrderSaga(ctx.client, o, queue);
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'completed', completedSteps: Object.values(Step), compensations: [] });
    expect((await handle.describe()).type).toBe(ORDER_SAGA_WORKFLOW_TYPE);

    const { events } = await handle.fetchHistory();
    const count = (has: (e: (typeof events extends (infer E)[] | null | undefined ? E : never)) => unknown) => events!.filter((e) => has(e)).length;
    expect(count((e) => e.workflowTaskCompletedEventAttributes)).toBe(1);
    expect(count((e) => e.activityTaskScheduledEventAttributes)).toBe(0);
    const markers = events!.flatMap((e) => (e.markerRecordedEventAttributes ? [e.markerRecordedEventAttributes.markerName] : []));
    // One marker per local activity (the six steps), none for a patch.
    expect(markers).toEqual(Array(6).fill('core_local_activity'));
    // SagaStatus 'completed' when the saga ends: the only upsert (it starts 'running').
    expect(count((e) => e.upsertWorkflowSearchAttributesEventAttributes)).toBe(1);
    expect(await books(o)).toMatchObject({ status: 'completed', netChargedMinor: 4_990, activeShipments: 1 });
  } finally {
    await stop();
  }
});

test("a completed saga's worker sends PostgreSQL ten messages: one per step planned as one statement, two per other step", async () => {
  // A pool of the worker's own, so that only its steps' messages are counted.
  const pool = createPool({ connectionString: databaseUrl(), schema: ctx.schema, max: 5 });
  const messages = countingMessages(pool);
  const queue = uniqueId('one-task-messages');
  const w = await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue: queue, deps: { ...ctx.deps, db: pool } });
  const stop = await ctx.startWorker(w);
  try {
    const o = orderInput();
    await seedInventory(ctx.db, { [o.items[0]!.sku]: 3 });
    const handle = await startOrderSaga(ctx.client, o, queue);
    expect(await handle.result()).toMatchObject({ status: 'completed' });
    // recordOrder and reserveInventory: BEGIN with the effect, the record with COMMIT. checkFraud and
    // completeOrder: the whole step in one. The charge and the label: the claim with the pending row,
    // then the settle with its outcome, one message each side of the call.
    expect(messages.sent()).toBe(2 + 2 + 1 + 2 + 2 + 1);
    expect(await books(o)).toMatchObject({ status: 'completed', netChargedMinor: 4_990, activeShipments: 1 });
  } finally {
    await stop();
    await pool.end();
  }
});

test('a cancel that reaches the saga before its charge: the charge is abandoned, nothing is charged, the order cancelled', async () => {
  const queue = uniqueId('one-task-early-cancel');
  const o = orderInput();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 3 });
  // No worker yet: the cancel waits on the server and reaches the saga with its first workflow task.
  const handle = await startOrderSaga(ctx.client, o, queue);
  const answer = sendCancel(handle, 'changed my mind');
  await new Promise((r) => setTimeout(r, 500));
  const stop = await worker(queue);
  try {
    const result = await handle.result();
    expect(await answer).toBe('accepted');
    expect(result).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled', message: 'changed my mind' } });
    // The database steps ran through the cancel (a lost task may have run them); the charge was stopped before its call.
    expect(result.completedSteps).toEqual([Step.recordOrder, Step.reserveInventory, Step.fraudCheck]);
    expect(result.compensations.map((c) => [c.step, c.status])).toEqual([
      [Step.chargePayment, 'done'],
      [Step.fraudCheck, 'done'],
      [Step.reserveInventory, 'done'],
      [Step.recordOrder, 'done'],
    ]);
    expect(await ledgerOf(handle.workflowId)).toMatchObject({ [Step.chargePayment]: ['cancelled', null] });
    expect((await ctx.db.query(`SELECT 1 FROM payments WHERE order_id = $1`, [o.orderId])).rows).toEqual([]);
    expect(await books(o)).toMatchObject({ status: 'cancelled', netChargedMinor: 0, activeShipments: 0 });
  } finally {
    await stop();
  }
});

test('a Temporal cancel before the charge is a cancel too: the charge abandoned, the order cancelled', async () => {
  const queue = uniqueId('one-task-temporal-cancel');
  const o = orderInput();
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 3 });
  const handle = await startOrderSaga(ctx.client, o, queue);
  await handle.cancel();
  const stop = await worker(queue);
  try {
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled' } });
    expect(await ledgerOf(handle.workflowId)).toMatchObject({ [Step.chargePayment]: ['cancelled', null] });
    expect(await books(o)).toMatchObject({ status: 'cancelled', netChargedMinor: 0, activeShipments: 0 });
  } finally {
    await stop();
  }
});

test('a cancel during a long charge is seen when the SDK heartbeats the workflow task: the charge ends, the saga stops before the label and refunds it', async () => {
  const queue = uniqueId('one-task-long-charge');
  const stop = await worker(queue);
  try {
    const o = orderInput();
    await seedInventory(ctx.db, { [o.items[0]!.sku]: 3 });
    await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 2500, path: '/charges', keyPrefix: `order-${o.orderId}/` });
    // A 2 s task timeout: the SDK heartbeats the task at 80% of it (1.6 s), and the cancel comes with the next task.
    const handle = await ctx.client.workflow.start<OrderSagaWorkflow>(ORDER_SAGA_WORKFLOW_TYPE, {
      workflowId: orderWorkflowId(o.orderId),
      taskQueue: queue,
      args: [o],
      workflowTaskTimeout: '2s',
    });
    await until(
      async () => (await ctx.db.query(`SELECT status FROM payments WHERE order_id = $1`, [o.orderId])).rows,
      (rows) => rows.length === 1,
      'the charge to be under way',
    );
    expect(await sendCancel(handle, 'too slow')).toBe('accepted');
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled', message: 'too slow' } });
    expect(result.completedSteps).toEqual([Step.recordOrder, Step.reserveInventory, Step.fraudCheck, Step.chargePayment]);
    expect(result.compensations.map((c) => c.step)).toEqual([Step.createShipment, Step.chargePayment, Step.fraudCheck, Step.reserveInventory, Step.recordOrder]);
    expect(await ledgerOf(handle.workflowId)).toMatchObject({ [Step.createShipment]: ['cancelled', null], [Step.chargePayment]: ['cancelled', 'completed'] });
    expect(await books(o)).toMatchObject({ status: 'cancelled', netChargedMinor: 0, activeShipments: 0 });
  } finally {
    await stop();
  }
});

test('a cancel that comes while a short saga runs is seen when its task ends, too late: refused, the order completed', async () => {
  const queue = uniqueId('one-task-late-cancel');
  const stop = await worker(queue);
  try {
    const o = orderInput();
    await seedInventory(ctx.db, { [o.items[0]!.sku]: 3 });
    await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 1000, path: '/charges', keyPrefix: `order-${o.orderId}/` });
    const handle = await startOrderSaga(ctx.client, o, queue);
    await until(
      async () => (await ctx.db.query(`SELECT status FROM payments WHERE order_id = $1`, [o.orderId])).rows,
      (rows) => rows.length === 1,
      'the charge to be under way',
    );
    const row = (await findOrder(ctx.db, o.orderId))!;
    const outcome = await cancelOrder({ db: ctx.db, temporal: ctx.client, taskQueue: queue }, row, 'too late');
    expect(outcome).toEqual({ kind: 'refused', reason: 'the order is already completed' });
    expect((await handle.result()).status).toBe('completed');
    expect(await books(o)).toMatchObject({ status: 'completed', netChargedMinor: 4_990, activeShipments: 1 });
  } finally {
    await stop();
  }
});

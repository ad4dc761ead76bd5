/**
 * The outbox (migration 011's trigger, src/orders/relay.ts) and its example
 * consumer (examples/shipping-notifications) on the real PostgreSQL, NATS
 * JetStream and Temporal server: every order change writes its event in the
 * change's own transaction; the relay publishes each as a CloudEvent, in order
 * per order, and never loses one when it dies between publish and mark; the
 * projection applies each completed order exactly once after its inbox.
 * Asserted on rows and on the messages in the stream.
 */
import { randomBytes } from 'node:crypto';
import { Pool } from 'pg';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { inTransaction, quoteIdent, type Db } from '../../src/db/pool';
import { createApiClient } from '../../src/api/auth';
import { insertOrder } from '../../src/orders/repository';
import { startOrderSaga } from '../../src/orders/start';
import { ensureEventStream, purgePublishedEvents, relayLag, relayOnce, runRelay, type CloudEvent, type EventStream } from '../../src/orders/relay';
import { outboxLag, outboxTableDdl, purgePublished, runOutboxRelay, type OutboxTable } from '../../packages/toolkit/src/outbox';
import { orderWorkflowId } from '../../workflows/order/ids';
import { statusQuery } from '../../workflows/order/definitions';
import { sagaResolveUpdate } from '@sagaflow/toolkit/workflow';
import type { OrderInput } from '../../workflows/order/types';
import { createSagaWorker } from '../../workers/worker';
import { createOrderActivities } from '../../activities/orders';
import { createLedger } from '@sagaflow/toolkit/ledger';
import { notificationsTopology, startNotifications } from '../../examples/shipping-notifications/projection';
import { addFault, createTestContext, createTestSchema, databaseUrl, seedInventory, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const taskQueue = uniqueId('outbox');
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  ctx = await createTestContext('outbox');
  ctx.startWorker(await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps }));
  nc = await connect({ servers: process.env.NATS_URL!.split(',') });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

afterAll(async () => {
  await nc?.close();
  await ctx?.close();
});

/** A stream of the test's own, with a short duplicate window when asked (the broker then keeps a republished copy). */
async function eventStream(duplicateWindowMs?: number): Promise<EventStream> {
  const tag = randomBytes(4).toString('hex');
  const s = { stream: `T_EVENTS_${tag}`, subjectPrefix: `t.${tag}.events` };
  await ensureEventStream(nc, s);
  if (duplicateWindowMs) await jsm.streams.update(s.stream, { duplicate_window: duplicateWindowMs * 1_000_000 });
  cleanups.push(() => jsm.streams.delete(s.stream));
  return s;
}

async function schema(): Promise<Db> {
  const s = await createTestSchema('outbox_own');
  cleanups.push(() => s.drop());
  return s.db;
}

function order(): OrderInput {
  return {
    orderId: `ord_${randomBytes(6).toString('hex')}`,
    customerId: uniqueId('cust'),
    items: [{ sku: uniqueId('sku'), quantity: 2 }],
    amount: { amountMinor: 4_200, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  };
}

const insert = (db: Db, o: OrderInput) => inTransaction(db, (tx) => insertOrder(tx, o, { workflowId: orderWorkflowId(o.orderId) }));

/** Every message in the stream, oldest first, as CloudEvents with their Nats-Msg-Id and subject. */
async function messages(s: EventStream): Promise<{ subject: string; msgId: string | undefined; event: CloudEvent<Record<string, unknown>> }[]> {
  const info = await jsm.streams.info(s.stream);
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(s.stream, { seq });
    if (m) out.push({ subject: m.subject, msgId: m.header?.get('Nats-Msg-Id'), event: m.json<CloudEvent<Record<string, unknown>>>() });
  }
  return out;
}

async function eventRows(db: Db, orderId?: string) {
  const res = await db.query<{ position: string; event_id: string; order_id: string; type: string; published: boolean }>(
    `SELECT position, event_id, order_id, type, published_at IS NOT NULL AS published FROM order_events
      ${orderId ? 'WHERE order_id = $1' : ''} ORDER BY position`,
    orderId ? [orderId] : [],
  );
  return res.rows;
}

async function drain(db: Db, s: EventStream): Promise<void> {
  while ((await relayOnce(db, js, { stream: s })) > 0);
}

test('every change of an order writes its event in the same transaction: created, then completed, cancelled or compensated; nothing for a rollback', async () => {
  const db = await schema();
  const [a, b, c, gone] = [order(), order(), order(), order()];
  for (const o of [a, b, c]) await insert(db, o);
  await db.query(`UPDATE orders SET status = 'completed' WHERE id = $1`, [a.orderId]);
  await db.query(`UPDATE orders SET status = 'cancelled', failure_reason = 'SagaCancelled: stop' WHERE id = $1`, [b.orderId]);
  await db.query(`UPDATE orders SET status = 'failed', failure_reason = 'PaymentDeclined: no' WHERE id = $1`, [c.orderId]);
  // A change that changes nothing writes nothing; a transaction rolled back takes its event with it.
  await db.query(`UPDATE orders SET status = 'completed', updated_at = now() WHERE id = $1`, [a.orderId]);
  await db.query(`UPDATE orders SET failure_reason = 'edited' WHERE id = $1`, [c.orderId]);
  await expect(
    inTransaction(db, async (tx) => {
      await insertOrder(tx, gone, { workflowId: orderWorkflowId(gone.orderId) });
      throw new Error('rolled back');
    }),
  ).rejects.toThrow('rolled back');
  const rows = await eventRows(db);
  expect(rows.map((r) => [r.order_id, r.type])).toEqual([
    [a.orderId, 'created'],
    [b.orderId, 'created'],
    [c.orderId, 'created'],
    [a.orderId, 'completed'],
    [b.orderId, 'cancelled'],
    [c.orderId, 'compensated'],
  ]);
  const { rows: data } = await db.query<{ data: unknown }>(`SELECT data FROM order_events WHERE order_id = $1 AND type = 'compensated'`, [c.orderId]);
  expect(data[0]!.data).toEqual({
    orderId: c.orderId,
    status: 'failed',
    customerId: c.customerId,
    amount: { amountMinor: 4_200, currency: 'EUR' },
    items: c.items,
    failureReason: 'PaymentDeclined: no',
  });
});

test('a compensation that failed for good: one compensation_failed event per step, written once, and the order ends failed, not compensated or cancelled', async () => {
  const db = await schema();
  const [c, d] = [order(), order()];
  for (const o of [c, d]) await insert(db, o);
  const fail = (o: OrderInput, step: string) =>
    db.query(
      `UPDATE orders SET compensation_failures = coalesce(compensation_failures, '[]'::jsonb) || jsonb_build_array(jsonb_build_object('step', $2::text, 'type', 'InvalidInput', 'message', 'refused'))
        WHERE id = $1`,
      [o.orderId, step],
    );
  await fail(c, 'charge-payment');
  await fail(c, 'create-shipment');
  await db.query(`UPDATE orders SET status = 'failed', failure_reason = 'ShipmentFailed: no' WHERE id = $1`, [c.orderId]);
  await fail(d, 'charge-payment');
  await db.query(`UPDATE orders SET status = 'cancelled', failure_reason = 'SagaCancelled: stop' WHERE id = $1`, [d.orderId]);
  // Neither a change of the reason nor a write that leaves the failures as they were writes an event.
  await db.query(`UPDATE orders SET failure_reason = 'edited', compensation_failures = compensation_failures WHERE id = $1`, [c.orderId]);

  const rows = await eventRows(db);
  expect(rows.map((r) => [r.order_id, r.type])).toEqual([
    [c.orderId, 'created'],
    [d.orderId, 'created'],
    [c.orderId, 'compensation_failed'],
    [c.orderId, 'compensation_failed'],
    [c.orderId, 'failed'],
    [d.orderId, 'compensation_failed'],
    [d.orderId, 'failed'],
  ]);
  const { rows: data } = await db.query<{ type: string; data: Record<string, unknown> }>(
    `SELECT type, data FROM order_events WHERE order_id = $1 ORDER BY position`,
    [c.orderId],
  );
  const entry = (step: string) => ({ step, type: 'InvalidInput', message: 'refused' });
  expect(data[0]!.data).not.toHaveProperty('compensationFailures');
  expect(data[1]!.data).toMatchObject({ status: 'pending', compensationFailure: entry('charge-payment'), compensationFailures: [entry('charge-payment')] });
  expect(data[2]!.data).toMatchObject({ status: 'pending', compensationFailure: entry('create-shipment') });
  expect(data[3]!.data).toMatchObject({
    status: 'failed',
    failureReason: 'ShipmentFailed: no',
    compensationFailures: [entry('charge-payment'), entry('create-shipment')],
  });
  expect(data[3]!.data).not.toHaveProperty('compensationFailure');
});

test('a saga whose refund the provider refuses writes the failure on its order before the order closes: created, compensation_failed, failed; the recording is applied once; a manual resolution adds compensation_resolved', async () => {
  const o = order();
  const wf = orderWorkflowId(o.orderId);
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 10 });
  // The label is refused (the pivot fails for good), then so is the refund of the charge before it.
  // (Once: the label's undo asks the carrier under the same key whether a label exists.)
  await addFault(ctx.carrier.url, { kind: 'error', status: 400, path: '/shipments', keyPrefix: `${wf}/create-shipment`, times: 1 });
  await addFault(ctx.payment.url, { kind: 'error', status: 400, path: '/refunds', keyPrefix: `${wf}/charge-payment/undo` });
  await insert(ctx.db, o);
  await startOrderSaga(ctx.client, o, taskQueue);
  // The saga holds for an operator once its compensations have run (the order closed failed).
  const handle = ctx.client.workflow.getHandle(wf);
  for (let i = 0; i < 300 && (await handle.query(statusQuery)).awaitingOperator !== true; i++) await new Promise((r) => setTimeout(r, 100));
  expect(await handle.query(statusQuery)).toMatchObject({ phase: 'failed', awaitingOperator: true });

  const { rows: orderRows } = await ctx.db.query<{ status: string; compensation_failures: { step: string; type: string }[] }>(
    `SELECT status, compensation_failures FROM orders WHERE id = $1`,
    [o.orderId],
  );
  expect(orderRows).toEqual([
    { status: 'failed', compensation_failures: [expect.objectContaining({ step: 'charge-payment', type: 'InvalidInput' })] },
  ]);
  expect((await eventRows(ctx.db, o.orderId)).map((r) => r.type)).toEqual(['created', 'compensation_failed', 'failed']);
  // Every other step was still undone: the stock is back on the shelf; the charge stands, as the failure says.
  const { rows: held } = await ctx.db.query(`SELECT status FROM reservations WHERE order_id = $1`, [o.orderId]);
  expect(held).toEqual([{ status: 'released' }]);
  const { rows: charge } = await ctx.db.query(`SELECT status FROM provider_charges WHERE idempotency_key = $1`, [`${wf}/charge-payment`]);
  expect(charge).toEqual([{ status: 'succeeded' }]);

  // The activity run again (a retried attempt, a workflow task run again) adds nothing.
  const { recordCompensationFailure } = createOrderActivities({ db: ctx.db }, createLedger(ctx.db));
  await expect(
    recordCompensationFailure({ key: `${wf}/charge-payment/undo`, orderId: o.orderId, failure: { type: 'Other', message: 'again' } }),
  ).resolves.toEqual({ recorded: false });
  await expect(
    recordCompensationFailure({ key: `${wf}/charge-payment`, orderId: o.orderId, failure: { type: 'Other', message: 'a forward key' } }),
  ).rejects.toThrow('is not a compensation');
  expect((await eventRows(ctx.db, o.orderId)).map((r) => r.type)).toEqual(['created', 'compensation_failed', 'failed']);

  // Settled by hand: the saga ends CompensationFailed, naming the step; the order's entry says who and why.
  await handle.executeUpdate(sagaResolveUpdate, { args: [{ by: 'cli:ops', note: 'refunded by bank transfer' }] });
  const failure = await handle.result().catch((err: { cause?: { type?: string; message?: string } }) => err.cause);
  expect(failure).toMatchObject({ type: 'CompensationFailed' });
  expect(failure?.message).toContain('charge-payment');
  expect((await eventRows(ctx.db, o.orderId)).map((r) => r.type)).toEqual(['created', 'compensation_failed', 'failed', 'compensation_resolved']);
});

test('the relay publishes each event as a versioned CloudEvent, its ID as Nats-Msg-Id, and marks it; the lag reads zero after', async () => {
  const db = await schema();
  const s = await eventStream();
  const o = order();
  await insert(db, o);
  await db.query(`UPDATE orders SET status = 'completed' WHERE id = $1`, [o.orderId]);
  expect(await relayLag(db)).toMatchObject({ unpublished: 2 });
  await drain(db, s);
  const rows = await eventRows(db);
  const msgs = await messages(s);
  expect(msgs.map((m) => [m.subject, m.msgId])).toEqual([
    [`${s.subjectPrefix}.created`, rows[0]!.event_id],
    [`${s.subjectPrefix}.completed`, rows[1]!.event_id],
  ]);
  expect(msgs[1]!.event).toMatchObject({
    specversion: '1.0',
    id: rows[1]!.event_id,
    source: 'sagaflow/orders',
    type: 'io.sagaflow.order.completed.v1',
    subject: o.orderId,
    datacontenttype: 'application/json',
    sequence: rows[1]!.position,
    data: { orderId: o.orderId, status: 'completed' },
  });
  expect(Number.isNaN(Date.parse(msgs[1]!.event.time))).toBe(false);
  expect(rows.every((r) => r.published)).toBe(true);
  expect(await relayLag(db)).toEqual({ unpublished: 0, oldestMs: 0 });
});

test("a webhook endpoint's disabled and enabled events go out in order to their own stream, as versioned CloudEvents, and are marked", async () => {
  const db = await schema();
  const orders = await eventStream();
  const s = await eventStream();
  const client = await createApiClient(db, uniqueId('hooks'));
  await db.query(`INSERT INTO webhook_endpoints (id, client_id, url, secret_sealed) VALUES ('ep_1', $1, 'https://example.com/h', 'x')`, [client.id]);
  await db.query(`UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = 'failing' WHERE id = 'ep_1'`);
  await db.query(`UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL WHERE id = 'ep_1'`);
  // A write that leaves the endpoint as disabled or enabled as it was writes nothing.
  await db.query(`UPDATE webhook_endpoints SET disabled_at = NULL WHERE id = 'ep_1'`);
  const relay = runRelay({ db, nc, stream: orders, endpointEvents: s, idleMs: 20 });
  cleanups.push(() => relay.stop());
  for (let i = 0; i < 400 && (await messages(s)).length < 2; i++) await new Promise((r) => setTimeout(r, 25));
  const { rows } = await db.query<{ event_id: string; published: boolean }>(
    `SELECT event_id, published_at IS NOT NULL AS published FROM webhook_endpoint_events ORDER BY position`,
  );
  expect(rows.map((r) => r.published)).toEqual([true, true]);
  const got = await messages(s);
  expect(got.map((m) => [m.subject, m.msgId, m.event.type, m.event.subject, m.event.source])).toEqual([
    [`${s.subjectPrefix}.disabled`, rows[0]!.event_id, 'io.sagaflow.webhook_endpoint.disabled.v1', 'ep_1', 'sagaflow/webhooks'],
    [`${s.subjectPrefix}.enabled`, rows[1]!.event_id, 'io.sagaflow.webhook_endpoint.enabled.v1', 'ep_1', 'sagaflow/webhooks'],
  ]);
  expect(got[0]!.event.data).toMatchObject({ endpointId: 'ep_1', clientId: client.id, reason: 'failing' });
  expect(await messages(orders)).toEqual([]);
});

test("sagaflow/outbox for a saga's own events: written in the change's transaction, published in order per subject as the table's CloudEvents, marked; the lag and the purge", async () => {
  const db = await schema();
  const s = await eventStream();
  const trips: OutboxTable = { table: 'trip_events', subjectColumn: 'trip_id', source: 'trips', typeName: (t) => `io.example.trip.${t}.v1` };
  await db.query(outboxTableDdl(trips.table, trips.subjectColumn));
  await db.query(outboxTableDdl(trips.table, trips.subjectColumn)); // again: nothing changes
  expect(() => outboxTableDdl('trip events; DROP TABLE orders')).toThrow('invalid SQL identifier');
  await db.query('CREATE TABLE trips (id text PRIMARY KEY, status text NOT NULL)');
  const change = (id: string, status: string, fail = false) =>
    inTransaction(db, async (tx) => {
      await tx.query('INSERT INTO trips (id, status) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET status = $2', [id, status]);
      await tx.query('INSERT INTO trip_events (trip_id, type, data) VALUES ($1, $2, $3)', [id, status, { id, status }]);
      if (fail) throw new Error('rolled back');
    });
  await change('t1', 'held');
  await change('t2', 'held');
  await change('t1', 'booked');
  await expect(change('t2', 'booked', true)).rejects.toThrow('rolled back');
  expect(await outboxLag(db, trips)).toEqual({ unpublished: 3, oldestMs: expect.any(Number) });

  const relay = runOutboxRelay({ db, nc, outboxes: [{ outbox: trips, stream: s }], idleMs: 20 });
  cleanups.push(() => relay.stop());
  for (let i = 0; i < 400 && (await outboxLag(db, trips)).unpublished > 0; i++) await new Promise((r) => setTimeout(r, 25));
  const got = await messages(s);
  expect(got.map((m) => [m.subject, m.event.type, m.event.subject, m.event.source, m.event.data])).toEqual([
    [`${s.subjectPrefix}.held`, 'io.example.trip.held.v1', 't1', 'trips', { id: 't1', status: 'held' }],
    [`${s.subjectPrefix}.held`, 'io.example.trip.held.v1', 't2', 'trips', { id: 't2', status: 'held' }],
    [`${s.subjectPrefix}.booked`, 'io.example.trip.booked.v1', 't1', 'trips', { id: 't1', status: 'booked' }],
  ]);
  const { rows } = await db.query<{ event_id: string }>('SELECT event_id FROM trip_events ORDER BY position');
  expect(got.map((m) => m.msgId)).toEqual(rows.map((r) => r.event_id));
  expect(await outboxLag(db, trips)).toEqual({ unpublished: 0, oldestMs: 0 });
  await db.query(`UPDATE trip_events SET published_at = now() - interval '2 days' WHERE trip_id = 't1'`);
  expect(await purgePublished(db, trips, 86_400_000, 1)).toBe(2);
  expect((await db.query('SELECT trip_id FROM trip_events')).rows).toEqual([{ trip_id: 't2' }]);
});

test('a relay that dies between publish and mark loses nothing: the next one publishes again, the copy has the same ID, and the order of each order holds', async () => {
  const db = await schema();
  // A one-second window: the broker keeps the second copy, as it would hours later.
  const s = await eventStream(1000);
  const o = order();
  await insert(db, o);
  await db.query(`UPDATE orders SET status = 'completed' WHERE id = $1`, [o.orderId]);
  // The doomed relay's own connection, killed from outside once its publish was acknowledged.
  const appName = `doomed_${randomBytes(3).toString('hex')}`;
  const doomed = new Pool({ connectionString: databaseUrl(), options: `-c search_path=${quoteIdent((await db.query<{ s: string }>('SELECT current_schema() AS s')).rows[0]!.s)}`, application_name: appName, max: 1 });
  doomed.on('error', () => undefined);
  cleanups.push(() => doomed.end());
  const killing: JetStreamClient = Object.create(js, {
    publish: {
      value: async (...args: Parameters<JetStreamClient['publish']>) => {
        const ack = await js.publish(...args);
        await db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [appName]);
        return ack;
      },
    },
  });
  await expect(relayOnce(doomed, killing, { stream: s })).rejects.toThrow();
  expect((await eventRows(db)).map((r) => r.published)).toEqual([false, false]);
  await new Promise((r) => setTimeout(r, 1200));
  await drain(db, s);
  const rows = await eventRows(db);
  const msgs = await messages(s);
  // created twice (the lost mark), then completed: never completed before created.
  expect(msgs.map((m) => m.msgId)).toEqual([rows[0]!.event_id, rows[0]!.event_id, rows[1]!.event_id]);
  expect(rows.every((r) => r.published)).toBe(true);
});

test('two relays at once publish every event once, each order in its own order', async () => {
  const db = await schema();
  const s = await eventStream();
  const orders = Array.from({ length: 30 }, order);
  for (const o of orders) await insert(db, o);
  for (const [i, o] of orders.entries()) {
    await db.query(`UPDATE orders SET status = $2 WHERE id = $1`, [o.orderId, i % 2 ? 'completed' : 'cancelled']);
  }
  const relays = [runRelay({ db, nc, stream: s, batch: 7, idleMs: 20 }), runRelay({ db, nc, stream: s, batch: 7, idleMs: 20 })];
  for (let i = 0; i < 400 && (await relayLag(db)).unpublished > 0; i++) await new Promise((r) => setTimeout(r, 50));
  await Promise.all(relays.map((r) => r.stop()));
  const msgs = await messages(s);
  expect(msgs).toHaveLength(60);
  expect(new Set(msgs.map((m) => m.msgId)).size).toBe(60);
  for (const [i, o] of orders.entries()) {
    const mine = msgs.filter((m) => m.event.subject === o.orderId).map((m) => m.event.type);
    expect(mine).toEqual(['io.sagaflow.order.created.v1', `io.sagaflow.order.${i % 2 ? 'completed' : 'cancelled'}.v1`]);
  }
});

test('published events past their retention are purged in batches; unpublished ones never', async () => {
  const db = await schema();
  const s = await eventStream();
  const [a, b] = [order(), order()];
  await insert(db, a);
  await drain(db, s);
  await insert(db, b);
  await db.query(`UPDATE order_events SET published_at = now() - interval '2 days' WHERE published_at IS NOT NULL`);
  expect(await purgePublishedEvents(db, 86_400_000, 1)).toBe(1);
  expect((await eventRows(db)).map((r) => [r.order_id, r.published])).toEqual([[b.orderId, false]]);
});

test('the example projection: sagas run to their end through the real worker, the relay publishes, each completed order is notified exactly once even when its event comes twice', async () => {
  const s = await eventStream(1000);
  const tag = randomBytes(3).toString('hex');
  const notifications = await startNotifications(
    nc,
    ctx.db,
    notificationsTopology({
      stream: s.stream,
      subjects: [`${s.subjectPrefix}.>`],
      filterSubject: `${s.subjectPrefix}.completed`,
      consumer: `notify-${tag}`,
      deadLetterStream: `T_NOTIFY_DLQ_${tag}`,
      deadLetterSubject: `t.${tag}.notify.dead`,
    }),
  );
  cleanups.push(() => jsm.streams.delete(`T_NOTIFY_DLQ_${tag}`));
  cleanups.push(() => notifications.stop());
  const relay = runRelay({ db: ctx.db, nc, stream: s, idleMs: 20 });
  cleanups.push(() => relay.stop());

  const orders = [order(), order(), order()];
  await seedInventory(ctx.db, Object.fromEntries(orders.map((o) => [o.items[0]!.sku, 10])));
  const declined = { ...order(), paymentToken: 'tok_chargeDeclined' };
  await seedInventory(ctx.db, { [declined.items[0]!.sku]: 10 });
  for (const o of [...orders, declined]) {
    await insert(ctx.db, o);
    await startOrderSaga(ctx.client, o, taskQueue);
  }
  const outcomes = await Promise.all([...orders, declined].map((o) => ctx.client.workflow.getHandle(orderWorkflowId(o.orderId)).result()));
  expect(outcomes.map((o) => o.status)).toEqual(['completed', 'completed', 'completed', 'compensated']);
  const notified = async () =>
    (await ctx.db.query<{ order_id: string }>('SELECT order_id FROM shipping_notifications ORDER BY order_id')).rows.map((r) => r.order_id);
  const expected = orders.map((o) => o.orderId).sort();
  for (let i = 0; i < 400 && (await notified()).length < expected.length; i++) await new Promise((r) => setTimeout(r, 50));
  expect(await notified()).toEqual(expected);

  // The relay publishes a completed event again (as after a crash before its mark): the broker keeps it, the inbox drops it.
  await new Promise((r) => setTimeout(r, 1200));
  const again = await ctx.db.query<{ event_id: string }>(
    `UPDATE order_events SET published_at = NULL WHERE order_id = $1 AND type = 'completed' RETURNING event_id`,
    [orders[0]!.orderId],
  );
  for (let i = 0; i < 400 && (await relayLag(ctx.db)).unpublished > 0; i++) await new Promise((r) => setTimeout(r, 50));
  const copies = (await messages(s)).filter((m) => m.msgId === again.rows[0]!.event_id);
  expect(copies).toHaveLength(2);
  const { rows: inbox } = await ctx.db.query(`SELECT 1 FROM inbox_messages WHERE source = 'shipping-notifications' AND message_id = $1`, [again.rows[0]!.event_id]);
  expect(inbox).toHaveLength(1);
  for (let i = 0; i < 40; i++) await new Promise((r) => setTimeout(r, 25));
  const info = await jsm.consumers.info(s.stream, `notify-${tag}`);
  expect([info.num_pending, info.num_ack_pending]).toEqual([0, 0]);
  expect(await notified()).toEqual(expected);
});

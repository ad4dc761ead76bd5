/**
 * The stream door (src/orders/intake.ts on src/inbox) on the real NATS JetStream
 * server, PostgreSQL and Temporal server: order requests published to a stream
 * become exactly one order and one saga each, whatever the broker redelivers or
 * the producer publishes again; what can never be processed is dead-lettered
 * with its reason, and a dead letter can be requeued after a fix. Each test has
 * streams of its own; it asserts rows, sagas and messages, never logs.
 */
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import type { CreateOrderRequest } from '../../src/api/schemas';
import { createPool, type Db } from '../../src/db/pool';
import { processMessage, purgeInbox, type InboxHandler } from '../../packages/toolkit/src/inbox/inbox';
import {
  DeadLetterHeaders,
  ensureInboxTopology,
  listDeadLetters,
  requeueDeadLetter,
  runJetStreamInbox,
  type InboxOutcome,
  type InboxTopology,
  type RunningInbox,
} from '../../packages/toolkit/src/inbox/jetstream';
import { orderIntakeHandler, orderIntakeTopology, type OrderMessage } from '../../src/orders/intake';
import { orderWorkflowId } from '../../workflows/order/ids';
import { createSagaWorker } from '../../workers/worker';
import { createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const taskQueue = uniqueId('intake');
const running: RunningInbox[] = [];
const streams: string[] = [];

beforeAll(async () => {
  ctx = await createTestContext('intake');
  ctx.startWorker(await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps }));
  nc = await connect({ servers: process.env.NATS_URL!.split(',') });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

afterAll(async () => {
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  await nc?.close();
  await ctx?.close();
});

/** Streams, subjects and a consumer of the test's own; quick redeliveries. */
async function topology(overrides: Partial<InboxTopology> = {}): Promise<InboxTopology> {
  const tag = randomBytes(4).toString('hex');
  const t = orderIntakeTopology({
    stream: `T_ORDERS_${tag}`,
    subjects: [`t.${tag}.orders.requested`],
    consumer: `intake-${tag}`,
    deadLetterStream: `T_ORDERS_DLQ_${tag}`,
    deadLetterSubject: `t.${tag}.orders.dead-letter`,
    maxDeliver: 3,
    ackWaitMs: 2000,
    ...overrides,
  });
  await ensureInboxTopology(nc, t);
  streams.push(t.stream, t.deadLetterStream);
  return t;
}

const outcomes: InboxOutcome[] = [];

async function startIntake(t: InboxTopology, over: { db?: Db; temporal?: Client; handler?: InboxHandler<OrderMessage> } = {}): Promise<RunningInbox> {
  const handler =
    over.handler ??
    orderIntakeHandler({ db: over.db ?? ctx.db, temporal: over.temporal ?? ctx.client, taskQueue, source: t.stream, startTimeoutMs: 1000 });
  const r = await runJetStreamInbox({
    nc,
    db: over.db ?? ctx.db,
    topology: t,
    handler,
    retentionMs: 86_400_000,
    backoffMs: () => 100,
    onOutcome: (o) => outcomes.push(o),
  });
  running.push(r);
  return r;
}

async function order(): Promise<CreateOrderRequest> {
  const o: CreateOrderRequest = {
    customerId: uniqueId('cust'),
    items: [{ sku: uniqueId('sku'), quantity: 1 }],
    amount: { amountMinor: 2_500, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Grace Hopper', line1: '2 Side St', city: 'Paris', postalCode: '75001', country: 'FR' },
  };
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 10 });
  return o;
}

/** Publishes a body; `brokerId` is the Nats-Msg-Id the broker dedupes on (the message ID too, unless `messageId` differs). */
async function publish(t: InboxTopology, body: string | Uint8Array, opts: { brokerId?: string; messageId?: string } = {}) {
  const h = natsHeaders();
  if (opts.messageId) h.set(DeadLetterHeaders.messageId, opts.messageId);
  return js.publish(t.subjects[0]!, body, { msgID: opts.brokerId, headers: opts.messageId ? h : undefined });
}

async function ordersOf(customerId: string) {
  const res = await ctx.db.query<{ id: string; status: string; saga_started_at: Date | null; client_id: string | null }>(
    'SELECT id, status, saga_started_at, client_id FROM orders WHERE customer_id = $1',
    [customerId],
  );
  return res.rows;
}

async function inboxRows(t: InboxTopology) {
  const res = await ctx.db.query<{ message_id: string; resource_id: string }>(
    'SELECT message_id, resource_id FROM inbox_messages WHERE source = $1 ORDER BY message_id',
    [t.stream],
  );
  return res.rows;
}

/** Polls until pred holds; bounded by a number of rounds, not asserted on time. */
async function eventually<T>(read: () => Promise<T>, pred: (v: T) => boolean, what: string, rounds = 400): Promise<T> {
  let v = await read();
  for (let i = 0; i < rounds && !pred(v); i++) {
    await new Promise((r) => setTimeout(r, 50));
    v = await read();
  }
  if (!pred(v)) throw new Error(`never reached: ${what} (last: ${JSON.stringify(v)})`);
  return v;
}

/** The consumer has nothing left: every message acked or terminated. */
const settled = (t: InboxTopology) =>
  eventually(
    () => jsm.consumers.info(t.stream, t.consumer),
    (i) => i.num_pending === 0 && i.num_ack_pending === 0 && i.num_redelivered >= 0,
    'consumer settled',
  );

const deadLetters = (t: InboxTopology, n: number) => eventually(() => listDeadLetters(nc, t), (d) => d.length >= n, `${n} dead letter(s)`);

test('an order message becomes one order and one saga, run to its end, and the message is acked after the commit', async () => {
  const t = await topology();
  await startIntake(t);
  const o = await order();
  await publish(t, JSON.stringify(o), { brokerId: 'm-1' });
  const [row] = await eventually(() => ordersOf(o.customerId), (r) => r.length === 1 && r[0]!.status === 'completed', 'order completed');
  expect(row).toMatchObject({ client_id: null });
  expect(row!.saga_started_at).not.toBeNull();
  expect(await inboxRows(t)).toEqual([{ message_id: 'm-1', resource_id: row!.id }]);
  const result = await ctx.client.workflow.getHandle(orderWorkflowId(row!.id)).result();
  expect(result).toMatchObject({ status: 'completed' });
  await settled(t);
});

test('the same message ID and payload published again after the broker forgot it: acked, no second order', async () => {
  // A one-second duplicate window: the broker stores the second publish as a new message.
  const t = await topology({ duplicateWindowMs: 1000 });
  await startIntake(t);
  const o = await order();
  await publish(t, JSON.stringify(o), { brokerId: 'dup-1' });
  await eventually(() => ordersOf(o.customerId), (r) => r.length === 1 && r[0]!.saga_started_at !== null, 'first order');
  await new Promise((r) => setTimeout(r, 1500));
  const again = await publish(t, JSON.stringify(o), { brokerId: 'dup-1' });
  expect(again.duplicate).toBe(false);
  await eventually(async () => outcomes.filter((x) => x.stream === t.stream && x.kind === 'ack').length, (n) => n === 2, 'both acked');
  expect(outcomes.filter((x) => x.stream === t.stream).map((x) => (x.kind === 'ack' ? x.claim : x.kind))).toEqual(['new', 'duplicate']);
  expect(await ordersOf(o.customerId)).toHaveLength(1);
  expect(await inboxRows(t)).toHaveLength(1);
  await settled(t);
});

test('the message ID may come in the body when no header carries it', async () => {
  const t = await topology();
  await startIntake(t);
  const o = await order();
  await publish(t, JSON.stringify({ ...o, messageId: 'body-id-7' }));
  await publish(t, JSON.stringify({ ...o, messageId: 'body-id-7' }));
  await eventually(async () => outcomes.filter((x) => x.stream === t.stream).length, (n) => n === 2, 'two outcomes');
  expect(await ordersOf(o.customerId)).toHaveLength(1);
  expect((await inboxRows(t)).map((r) => r.message_id)).toEqual(['body-id-7']);
});

test('the same message ID with another payload is dead-lettered as a conflict, with the original headers; the first order stands alone', async () => {
  const t = await topology();
  await startIntake(t);
  const o = await order();
  await publish(t, JSON.stringify(o), { brokerId: 'c-1' });
  await eventually(() => ordersOf(o.customerId), (r) => r.length === 1, 'first order');
  const h = natsHeaders();
  h.set('Trace-Id', 'abc-123');
  // Another broker ID, the same message ID: the producer reused its ID for another order.
  h.set(DeadLetterHeaders.messageId, 'c-1');
  await js.publish(t.subjects[0]!, JSON.stringify({ ...o, amount: { amountMinor: 9_999, currency: 'EUR' } }), { headers: h, msgID: 'c-1-other' });
  const [dead] = await deadLetters(t, 1);
  expect(dead).toMatchObject({ reason: 'conflict', deliveries: 1, messageId: 'c-1', subject: t.subjects[0] });
  expect(dead!.detail).toMatch(/^message ID c-1 was already processed with another payload/);
  const stored = await jsm.streams.getMessage(t.deadLetterStream, { seq: dead!.sequence });
  expect(stored?.header.get('Trace-Id')).toBe('abc-123');
  expect(await ordersOf(o.customerId)).toHaveLength(1);
  await settled(t);
});

describe('a message that can never be processed is dead-lettered at once, nothing written', () => {
  const cases: [string, () => Promise<string | Uint8Array>, RegExp][] = [
    ['not JSON', async () => '{"customerId": ', /^the body is not JSON/],
    ['not UTF-8', async () => new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), /^the body is not UTF-8$/],
    ['not an order', async () => JSON.stringify({ hello: 'world' }), /^the body is not an order request: /],
    ['a NUL byte in a field', async () => JSON.stringify({ ...(await order()), customerId: 'cust\u0000x' }), /customerId/],
    ['a lone surrogate in a field', async () => JSON.stringify({ ...(await order()), customerId: 'cust\ud800x' }), /customerId/],
    ['an empty body', async () => new Uint8Array(), /^the body is not JSON/],
  ];
  test.each(cases)('%s', async (_what, body, detail) => {
    const t = await topology();
    await startIntake(t);
    await publish(t, await body(), { brokerId: uniqueId('bad') });
    const [dead] = await deadLetters(t, 1);
    expect(dead).toMatchObject({ reason: 'invalid', deliveries: 1 });
    expect(dead!.detail).toMatch(detail);
    expect(await inboxRows(t)).toEqual([]);
    await settled(t);
  });

  test('a message with no ID at all', async () => {
    const t = await topology();
    await startIntake(t);
    const o = await order();
    await publish(t, JSON.stringify(o));
    const [dead] = await deadLetters(t, 1);
    expect(dead).toMatchObject({ reason: 'invalid', detail: 'the message has no ID' });
    expect(await ordersOf(o.customerId)).toEqual([]);
  });

  test('a message ID PostgreSQL cannot store (a lone surrogate in the body\'s messageId)', async () => {
    const t = await topology();
    await startIntake(t);
    const o = await order();
    await publish(t, JSON.stringify({ ...o, messageId: 'id-\ud800' }));
    const [dead] = await deadLetters(t, 1);
    expect(dead).toMatchObject({ reason: 'invalid', detail: 'the message ID carries text PostgreSQL cannot store' });
    expect(await ordersOf(o.customerId)).toEqual([]);
  });
});

test('a poison message never holds back the ones behind it', async () => {
  const t = await topology();
  await startIntake(t);
  await publish(t, 'not json at all', { brokerId: 'poison' });
  const good = await Promise.all([1, 2, 3].map(() => order()));
  for (const [i, o] of good.entries()) await publish(t, JSON.stringify(o), { brokerId: `good-${i}` });
  for (const o of good) await eventually(() => ordersOf(o.customerId), (r) => r.length === 1, 'a good order');
  expect((await deadLetters(t, 1)).map((d) => d.reason)).toEqual(['invalid']);
  await settled(t);
});

test('PostgreSQL unreachable: redelivered with backoff, dead-lettered after maxDeliver with the last error; requeued after the fix, processed once', async () => {
  const t = await topology({ maxDeliver: 3 });
  // A pool that can reach no server: every claim fails as a real outage does.
  const down = createPool({ connectionString: 'postgres://sagaflow@127.0.0.1:1/none', max: 1 });
  try {
    const intake = await startIntake(t, { db: down });
    const o = await order();
    await publish(t, JSON.stringify(o), { brokerId: 'pg-down-1' });
    const [dead] = await deadLetters(t, 1);
    expect(dead).toMatchObject({ reason: 'exhausted', deliveries: 3, messageId: 'pg-down-1' });
    expect(dead!.detail).toMatch(/^failed 3 deliveries; the last: .*ECONNREFUSED/);
    expect(outcomes.filter((x) => x.stream === t.stream).map((x) => x.kind)).toEqual(['retry', 'retry', 'dead-letter']);
    expect(await ordersOf(o.customerId)).toEqual([]);
    await intake.stop();

    // The fix: the database is back. The requeued letter keeps its message ID.
    await startIntake(t);
    await requeueDeadLetter(nc, t, dead!.sequence);
    expect(await listDeadLetters(nc, t)).toEqual([]);
    await eventually(() => ordersOf(o.customerId), (r) => r.length === 1 && r[0]!.saga_started_at !== null, 'order after requeue');
    expect((await inboxRows(t)).map((r) => r.message_id)).toEqual(['pg-down-1']);
    await settled(t);
  } finally {
    await down.end();
  }
});

test('a dead letter requeued twice (a crash between republish and delete) still makes one order', async () => {
  const t = await topology();
  const o = await order();
  // Dead-lettered first: the same message ID already used for another body.
  await startIntake(t);
  await publish(t, JSON.stringify(o), { brokerId: 'rq-1' });
  await eventually(() => ordersOf(o.customerId), (r) => r.length === 1, 'first order');
  const other = await order();
  await publish(t, JSON.stringify(other), { brokerId: 'rq-2', messageId: 'rq-1' });
  const [dead] = await deadLetters(t, 1);
  expect(dead!.reason).toBe('conflict');
  // Republished by hand twice with the requeue's own broker ID: the broker keeps one.
  const h = natsHeaders();
  h.set(DeadLetterHeaders.messageId, 'rq-2-fixed');
  const first = await js.publish(t.subjects[0]!, JSON.stringify(other), { headers: h, msgID: `requeue-${t.deadLetterStream}-${dead!.sequence}` });
  const second = await js.publish(t.subjects[0]!, JSON.stringify(other), { headers: h, msgID: `requeue-${t.deadLetterStream}-${dead!.sequence}` });
  expect([first.duplicate, second.duplicate]).toEqual([false, true]);
  await eventually(() => ordersOf(other.customerId), (r) => r.length === 1, 'the fixed order');
  await settled(t);
  expect(await ordersOf(other.customerId)).toHaveLength(1);
});

test('Temporal unreachable after the commit: not acked; the redelivery finds the inbox record and starts the one saga', async () => {
  const t = await topology({ maxDeliver: 10 });
  const unreachable = new Client({ connection: Connection.lazy({ address: '127.0.0.1:1' }), namespace: ctx.namespace });
  const intake = await startIntake(t, { temporal: unreachable });
  const o = await order();
  await publish(t, JSON.stringify(o), { brokerId: 'tmp-down-1' });
  await eventually(async () => outcomes.filter((x) => x.stream === t.stream && x.kind === 'retry').length, (n) => n >= 1, 'a retry');
  const [row] = await ordersOf(o.customerId);
  expect(row).toMatchObject({ status: 'pending', saga_started_at: null });
  await intake.stop();

  await startIntake(t);
  await eventually(() => ordersOf(o.customerId), (r) => r[0]!.saga_started_at !== null, 'saga started');
  expect(await ordersOf(o.customerId)).toHaveLength(1);
  const { status } = await ctx.client.workflow.getHandle(orderWorkflowId(row!.id)).describe();
  expect(['RUNNING', 'COMPLETED']).toContain(status.name);
  expect(outcomes.filter((x) => x.stream === t.stream && x.kind === 'ack').map((x) => (x.kind === 'ack' ? x.claim : ''))).toEqual(['duplicate']);
  await settled(t);
});

test('a consumer that dies between its commit and its ack: the redelivery finds the record, acks, and nothing is made twice', async () => {
  const t = await topology({ ackWaitMs: 1000 });
  const o = await order();
  await publish(t, JSON.stringify(o), { brokerId: 'crash-1' });
  // A consumer of its own connection takes the message and commits it, then its connection
  // dies before any ack: what the broker sees of a process killed at that moment.
  const doomed = await connect({ servers: process.env.NATS_URL!.split(',') });
  const m = await (await jetstream(doomed).consumers.get(t.stream, t.consumer)).next({ expires: 5000 });
  expect(m).not.toBeNull();
  const handler = orderIntakeHandler({ db: ctx.db, temporal: ctx.client, taskQueue, source: t.stream });
  const verdict = await processMessage(ctx.db, { ...handler, afterCommit: undefined }, { messageId: m!.headers?.get('Nats-Msg-Id'), body: m!.data }, 86_400_000);
  expect(verdict).toMatchObject({ kind: 'ack', claim: 'new' });
  await doomed.close();
  const [row] = await ordersOf(o.customerId);
  expect(row).toMatchObject({ saga_started_at: null });

  await startIntake(t);
  await eventually(() => ordersOf(o.customerId), (r) => r[0]!.saga_started_at !== null, 'saga started by the redelivery');
  await settled(t);
  expect(await ordersOf(o.customerId)).toHaveLength(1);
  expect(outcomes.filter((x) => x.stream === t.stream)).toMatchObject([{ kind: 'ack', claim: 'duplicate', deliveries: 2 }]);
});

test('two intakes on one consumer share the messages; duplicates published to both make one order each', async () => {
  const t = await topology();
  await startIntake(t);
  await startIntake(t);
  const orders = await Promise.all(Array.from({ length: 6 }, () => order()));
  for (const [i, o] of orders.entries()) {
    await publish(t, JSON.stringify(o), { brokerId: `pair-${i}-a`, messageId: `pair-${i}` });
    await publish(t, JSON.stringify(o), { brokerId: `pair-${i}-b`, messageId: `pair-${i}` });
  }
  for (const o of orders) await eventually(() => ordersOf(o.customerId), (r) => r.length === 1, 'one order');
  await settled(t);
  for (const o of orders) expect(await ordersOf(o.customerId)).toHaveLength(1);
  expect(await inboxRows(t)).toHaveLength(6);
});

test('its stream and consumer gone under a running intake (a NATS server back with an empty store): it creates them again and consumes what comes next', async () => {
  const t = await topology();
  const lost: string[] = [];
  const r = await runJetStreamInbox({
    nc,
    db: ctx.db,
    topology: t,
    handler: orderIntakeHandler({ db: ctx.db, temporal: ctx.client, taskQueue, source: t.stream, startTimeoutMs: 1000 }),
    retentionMs: 86_400_000,
    backoffMs: () => 100,
    onTopologyLost: (err) => lost.push(err.message),
  });
  running.push(r);
  const before = await order();
  await publish(t, JSON.stringify(before), { brokerId: 'before-loss' });
  await eventually(() => ordersOf(before.customerId), (rows) => rows.length === 1, 'the order before the loss');

  await jsm.streams.delete(t.stream);
  await jsm.streams.delete(t.deadLetterStream);
  await eventually(() => jsm.consumers.info(t.stream, t.consumer).then(() => true, () => false), (back) => back, 'the consumer created again', 600);
  expect(lost.length).toBeGreaterThan(0);
  expect((await jsm.streams.info(t.deadLetterStream)).config.subjects).toEqual([t.deadLetterSubject]);
  const after = await order();
  await publish(t, JSON.stringify(after), { brokerId: 'after-loss' });
  await eventually(() => ordersOf(after.customerId), (rows) => rows.length === 1 && rows[0]!.saga_started_at !== null, 'the order after the loss');
  expect((await inboxRows(t)).map((x) => x.message_id)).toEqual(['after-loss', 'before-loss']);
  await settled(t);
});

test('the consumer is durable, explicit-ack, with max_ack_pending bounding what is in flight', async () => {
  const t = await topology({ maxAckPending: 7 });
  const info = await jsm.consumers.info(t.stream, t.consumer);
  expect(info.config).toMatchObject({ durable_name: t.consumer, ack_policy: 'explicit', max_ack_pending: 7, max_deliver: -1 });
  // Ensuring again (a second intake starting, new settings) updates rather than fails.
  await ensureInboxTopology(nc, { ...t, maxAckPending: 9 });
  expect((await jsm.consumers.info(t.stream, t.consumer)).config.max_ack_pending).toBe(9);
});

test('inbox records past their retention are purged in batches; the others stay', async () => {
  const source = uniqueId('purge');
  await ctx.db.query(
    `INSERT INTO inbox_messages (source, message_id, fingerprint, resource_id, expires_at)
     SELECT $1, 'old-' || g, 'f', 'r', now() - interval '1 hour' FROM generate_series(1, 25) g
     UNION ALL SELECT $1, 'fresh-' || g, 'f', 'r', now() + interval '1 day' FROM generate_series(1, 3) g`,
    [source],
  );
  expect(await purgeInbox(ctx.db, 10)).toBeGreaterThanOrEqual(25);
  const left = await ctx.db.query<{ message_id: string }>('SELECT message_id FROM inbox_messages WHERE source = $1 ORDER BY message_id', [source]);
  expect(left.rows.map((r) => r.message_id)).toEqual(['fresh-1', 'fresh-2', 'fresh-3']);
});

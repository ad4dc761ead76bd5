/**
 * Webhooks (src/webhooks, migration 012) on the real PostgreSQL against real HTTP
 * receivers: each client's own order events, fanned out by the outbox trigger in
 * the order change's transaction, delivered signed (Standard Webhooks) with
 * retries, every attempt recorded; an endpoint that keeps failing disabled; a
 * hanging one never holding back another client's; a delivery replayed; private
 * addresses refused in production mode. Asserted on rows and on what the
 * receivers got.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { createApiClient } from '../../src/api/auth';
import { inTransaction, type Db } from '../../src/db/pool';
import { insertOrder } from '../../src/orders/repository';
import { isPrivateAddress } from '../../src/webhooks/addresses';
import { createEndpoint, deleteEndpoint, enableEndpoint, EndpointRefused, listDeliveries, listEndpoints, replayDelivery } from '../../src/webhooks/endpoints';
import { runWebhookSender, type RunningSender, type WebhookSenderOptions } from '../../src/webhooks/sender';
import { parseSealingKey, verify } from '../../src/webhooks/signing';
import { orderWorkflowId } from '../../workflows/order/ids';
import type { OrderInput } from '../../workflows/order/types';
import { createTestSchema, uniqueId } from '../helpers/context';

let schema: Awaited<ReturnType<typeof createTestSchema>>;
let db: Db;
const sealingKey = parseSealingKey(randomBytes(32).toString('base64'));

interface Received {
  path: string;
  id: string;
  timestamp: string;
  signature: string;
  body: string;
}

/** A receiver whose every path answers as `behave(path, nth call)` says: a status, or 'hang' (never answers). */
let received: Received[] = [];
let behave: (path: string, n: number) => number | 'hang' = () => 204;
let receiver: http.Server;
let base: string;
const hanging: http.ServerResponse[] = [];

beforeAll(async () => {
  schema = await createTestSchema('webhooks');
  db = schema.db;
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const path = req.url ?? '';
      received.push({
        path,
        id: String(req.headers['webhook-id']),
        timestamp: String(req.headers['webhook-timestamp']),
        signature: String(req.headers['webhook-signature']),
        body,
      });
      const answer = behave(path, received.filter((r) => r.path === path).length);
      if (answer === 'hang') hanging.push(res);
      else res.writeHead(answer).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});

const senders: RunningSender[] = [];
afterEach(async () => {
  for (const res of hanging.splice(0)) res.destroy();
  await Promise.all(senders.splice(0).map((s) => s.stop()));
  received = [];
  behave = () => 204;
});

afterAll(async () => {
  receiver.closeAllConnections();
  await new Promise((r) => receiver.close(r));
  await schema?.drop();
});

function sender(over: Partial<WebhookSenderOptions> = {}): RunningSender {
  const s = runWebhookSender({ db, sealingKey, allowPrivate: true, idleMs: 20, retryScheduleMs: [50, 50, 50], timeoutMs: 2000, ...over });
  senders.push(s);
  return s;
}

function order(): OrderInput {
  return {
    orderId: `ord_${randomBytes(6).toString('hex')}`,
    customerId: uniqueId('cust'),
    items: [{ sku: 'widget', quantity: 1 }],
    amount: { amountMinor: 1_000, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  };
}

async function clientWithEndpoint(path: string) {
  const client = await createApiClient(db, uniqueId('wh'));
  const endpoint = await createEndpoint(db, { clientId: client.id, url: `${base}${path}`, sealingKey, allowPrivate: true });
  return { client, endpoint };
}

async function placeOrder(clientId: string, status?: 'completed' | 'cancelled'): Promise<OrderInput> {
  const o = order();
  await inTransaction(db, (tx) => insertOrder(tx, o, { clientId, workflowId: orderWorkflowId(o.orderId) }));
  if (status) await db.query('UPDATE orders SET status = $2 WHERE id = $1', [o.orderId, status]);
  return o;
}

async function deliveries(endpointId: string) {
  const { rows } = await db.query<{ id: string; type: string; order_id: string; state: string; attempts: number }>(
    'SELECT id, type, order_id, state, attempts FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY event_position',
    [endpointId],
  );
  return rows;
}

async function until<T>(read: () => Promise<T>, pred: (v: T) => boolean, what: string): Promise<T> {
  let v = await read();
  for (let i = 0; i < 400 && !pred(v); i++) {
    await new Promise((r) => setTimeout(r, 25));
    v = await read();
  }
  if (!pred(v)) throw new Error(`never reached: ${what} (last: ${JSON.stringify(v)})`);
  return v;
}

test("a client's order events reach its own endpoints, signed, as CloudEvents, in order; never another client's", async () => {
  const a = await clientWithEndpoint('/a');
  const b = await clientWithEndpoint('/b');
  const o = await placeOrder(a.client.id, 'completed');
  await placeOrder(b.client.id);
  expect((await deliveries(a.endpoint.id)).map((d) => [d.type, d.order_id])).toEqual([
    ['created', o.orderId],
    ['completed', o.orderId],
  ]);
  sender();
  const [first, second] = await until(() => deliveries(a.endpoint.id), (d) => d.every((x) => x.state === 'delivered'), 'delivered');
  const mine = received.filter((r) => r.path === '/a');
  expect(mine.map((r) => r.id)).toEqual([first!.id, second!.id]);
  for (const r of mine) {
    expect(verify(a.endpoint.secret, { id: r.id, timestamp: r.timestamp, signature: r.signature }, r.body)).toBe(true);
    // Another client's secret does not verify it, nor a body changed by one byte.
    expect(verify(b.endpoint.secret, { id: r.id, timestamp: r.timestamp, signature: r.signature }, r.body)).toBe(false);
    expect(verify(a.endpoint.secret, { id: r.id, timestamp: r.timestamp, signature: r.signature }, `${r.body} `)).toBe(false);
  }
  expect(JSON.parse(mine[1]!.body)).toMatchObject({ specversion: '1.0', type: 'io.sagaflow.order.completed.v1', subject: o.orderId, data: { status: 'completed' } });
  // B's endpoint got only B's order.
  const theirs = received.filter((r) => r.path === '/b').map((r) => JSON.parse(r.body).subject);
  expect(theirs).not.toContain(o.orderId);
  expect(theirs).toHaveLength(1);
});

test('a failing endpoint is retried with the same webhook-id, every attempt recorded, until it answers', async () => {
  const a = await clientWithEndpoint('/flaky');
  behave = (_p, n) => (n <= 2 ? 503 : 200);
  await placeOrder(a.client.id);
  sender();
  const [d] = await until(() => deliveries(a.endpoint.id), (d) => d[0]?.state === 'delivered', 'delivered after retries');
  expect(d!.attempts).toBe(3);
  expect(new Set(received.map((r) => r.id))).toEqual(new Set([d!.id]));
  const [view] = (await listDeliveries(db, a.client.id, a.endpoint.id))!;
  expect(view!.attempts.map((x) => [x.attempt, x.status, x.error])).toEqual([
    [1, 503, 'HTTP 503'],
    [2, 503, 'HTTP 503'],
    [3, 200, null],
  ]);
});

test('a delivery whose retries run out ends failed; replayed, it is sent again with the same webhook-id and a fresh round', async () => {
  const a = await clientWithEndpoint('/down');
  behave = () => 500;
  await placeOrder(a.client.id);
  sender({ retryScheduleMs: [20, 20] });
  const [d] = await until(() => deliveries(a.endpoint.id), (d) => d[0]?.state === 'failed', 'failed');
  expect(d!.attempts).toBe(3);
  behave = (_p, n) => (n <= 4 ? 500 : 200);
  expect(await replayDelivery(db, a.client.id, a.endpoint.id, d!.id)).toBe(true);
  const [after] = await until(() => deliveries(a.endpoint.id), (x) => x[0]?.state === 'delivered', 'delivered after replay');
  expect(after!.attempts).toBe(5);
  expect(new Set(received.map((r) => r.id))).toEqual(new Set([d!.id]));
  // Another client cannot replay it, nor can an unknown delivery be.
  const other = await createApiClient(db, uniqueId('other'));
  expect(await replayDelivery(db, other.id, a.endpoint.id, d!.id)).toBe(false);
  expect(await replayDelivery(db, a.client.id, a.endpoint.id, 'msg_unknown')).toBe(false);
});

test('an endpoint that keeps failing is disabled with the reason; its events wait; enabled again, they go out', async () => {
  const a = await clientWithEndpoint('/broken');
  behave = () => 500;
  await placeOrder(a.client.id);
  sender({ retryScheduleMs: [10, 10, 10, 10, 10], disableAfterFailures: 3 });
  const [ep] = await until(() => listEndpoints(db, a.client.id), (e) => e[0]?.status === 'disabled', 'disabled');
  expect(ep!.disabledReason).toMatch(/^3 consecutive failed attempts; the last: HTTP 500$/);
  const sent = received.length;
  // An order while disabled: no delivery is even written for it.
  await placeOrder(a.client.id);
  expect(await deliveries(a.endpoint.id)).toHaveLength(1);
  await new Promise((r) => setTimeout(r, 200));
  expect(received.length).toBe(sent);
  behave = () => 200;
  expect(await enableEndpoint(db, a.client.id, a.endpoint.id)).toBe(true);
  await until(() => deliveries(a.endpoint.id), (d) => d[0]?.state === 'delivered', 'delivered once enabled');
  // Each change is an event in the outbox, written with the change (the relay publishes them).
  const { rows: events } = await db.query<{ type: string; client_id: string; data: Record<string, unknown> }>(
    `SELECT type, client_id, data FROM webhook_endpoint_events WHERE endpoint_id = $1 ORDER BY position`,
    [a.endpoint.id],
  );
  expect(events.map((e) => [e.type, e.client_id])).toEqual([
    ['disabled', a.client.id],
    ['enabled', a.client.id],
  ]);
  expect(events[0]!.data).toMatchObject({ endpointId: a.endpoint.id, clientId: a.client.id, reason: ep!.disabledReason, disabledAt: expect.any(String) });
  expect(events[1]!.data).toMatchObject({ endpointId: a.endpoint.id, reason: null, disabledAt: null });
});

test("a hanging endpoint holds back no other client's deliveries", async () => {
  const slow = await clientWithEndpoint('/hang');
  const fast = await clientWithEndpoint('/fast');
  behave = (p) => (p === '/hang' ? 'hang' : 204);
  await placeOrder(slow.client.id);
  sender({ timeoutMs: 60_000, concurrency: 2 });
  await until(async () => received.filter((r) => r.path === '/hang').length, (n) => n === 1, 'the hanging attempt in flight');
  const orders = [await placeOrder(fast.client.id, 'completed'), await placeOrder(fast.client.id, 'cancelled')];
  await until(() => deliveries(fast.endpoint.id), (d) => d.length === 4 && d.every((x) => x.state === 'delivered'), 'fast delivered');
  expect(received.filter((r) => r.path === '/fast').map((r) => JSON.parse(r.body).subject)).toEqual([
    orders[0]!.orderId,
    orders[0]!.orderId,
    orders[1]!.orderId,
    orders[1]!.orderId,
  ]);
  // Meanwhile the hanging endpoint's one attempt is still open: nothing recorded for it yet.
  const [stuck] = await deliveries(slow.endpoint.id);
  expect(stuck).toMatchObject({ state: 'pending', attempts: 0 });
});

test('private and loopback addresses are refused in production mode, at registration and before every attempt', async () => {
  const client = await createApiClient(db, uniqueId('ssrf'));
  const refused = async (url: string) =>
    createEndpoint(db, { clientId: client.id, url, sealingKey, allowPrivate: false }).then(
      () => 'accepted',
      (e: Error) => (e instanceof EndpointRefused ? e.message : `threw ${e.message}`),
    );
  expect(await refused('http://127.0.0.1:9/x')).toMatch(/loopback or private address \(127\.0\.0\.1\): refused$/);
  expect(await refused('http://localhost/x')).toMatch(/loopback or private address/);
  expect(await refused('http://10.1.2.3/x')).toMatch(/refused$/);
  expect(await refused('http://169.254.169.254/latest/meta-data')).toMatch(/refused$/);
  expect(await refused('http://[::1]:8080/')).toMatch(/refused$/);
  expect(await refused('http://[::ffff:192.168.0.1]/')).toMatch(/refused$/);
  expect(await refused('ftp://example.com/x')).toBe('the URL must be http or https');
  expect(await refused('https://user:pw@example.com/x')).toBe('the URL must not carry credentials');
  expect(await refused('not a url')).toBe('not a URL');
  expect(await listEndpoints(db, client.id)).toEqual([]);
  expect([isPrivateAddress('8.8.8.8'), isPrivateAddress('172.32.0.1'), isPrivateAddress('2001:db8::1')]).toEqual([false, false, false]);

  // Registered where private addresses were allowed, then sent by a sender in production mode: refused, nothing sent.
  const a = await clientWithEndpoint('/inside');
  await placeOrder(a.client.id);
  sender({ allowPrivate: false, retryScheduleMs: [] });
  const [d] = await until(() => deliveries(a.endpoint.id), (x) => x[0]?.state === 'failed', 'refused attempt');
  expect(d!.attempts).toBe(1);
  expect(received.filter((r) => r.path === '/inside')).toEqual([]);
  const [view] = (await listDeliveries(db, a.client.id, a.endpoint.id))!;
  expect(view!.attempts[0]!.error).toMatch(/loopback or private address/);
});

test('a deleted endpoint gets nothing more: its pending deliveries end failed, new events write none', async () => {
  const a = await clientWithEndpoint('/gone');
  await placeOrder(a.client.id);
  expect(await deleteEndpoint(db, a.client.id, a.endpoint.id)).toBe(true);
  expect(await deleteEndpoint(db, a.client.id, a.endpoint.id)).toBe(false);
  await placeOrder(a.client.id);
  expect((await deliveries(a.endpoint.id)).map((d) => d.state)).toEqual(['failed']);
  expect(await listEndpoints(db, a.client.id)).toEqual([]);
  expect(await listDeliveries(db, a.client.id, a.endpoint.id)).toBeUndefined();
});

test('two senders at once send each attempt once', async () => {
  const a = await clientWithEndpoint('/pair');
  for (let i = 0; i < 5; i++) await placeOrder(a.client.id, 'completed');
  sender();
  sender();
  await until(() => deliveries(a.endpoint.id), (d) => d.length === 10 && d.every((x) => x.state === 'delivered'), 'all delivered');
  const ids = received.filter((r) => r.path === '/pair').map((r) => r.id);
  expect(ids).toHaveLength(10);
  expect(new Set(ids).size).toBe(10);
  expect((await deliveries(a.endpoint.id)).every((d) => d.attempts === 1)).toBe(true);
});

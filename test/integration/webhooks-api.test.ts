/**
 * The webhook routes of the HTTP API on real HTTP, PostgreSQL and Temporal: a
 * client registers an endpoint (the secret shown once), its orders created through
 * POST /orders and run by the real worker reach it signed, it reads every attempt
 * and replays a delivery; no client sees, deletes or replays another's; bad input
 * is refused with nothing written.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { createApiClient } from '../../src/api/auth';
import { startApi, type RunningApi } from '../../src/api/server';
import { runWebhookSender, type RunningSender } from '../../src/webhooks/sender';
import { parseSealingKey, verify } from '../../src/webhooks/signing';
import { createSagaWorker } from '../../workers/worker';
import { createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { expectProblem, request } from '../helpers/api';

let ctx: TestContext;
let api: RunningApi;
let sender: RunningSender;
let receiver: http.Server;
let hook: string;
const got: { id: string; timestamp: string; signature: string; body: string }[] = [];
const sealingKey = parseSealingKey(randomBytes(32).toString('base64'));
const taskQueue = uniqueId('webhooks-api');

beforeAll(async () => {
  ctx = await createTestContext('webhooks_api');
  ctx.startWorker(await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps }));
  api = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue, log: () => undefined, webhooks: { sealingKey, allowPrivate: true } });
  sender = runWebhookSender({ db: ctx.db, sealingKey, allowPrivate: true, idleMs: 20, retryScheduleMs: [50, 50] });
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got.push({ id: String(req.headers['webhook-id']), timestamp: String(req.headers['webhook-timestamp']), signature: String(req.headers['webhook-signature']), body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
});

afterAll(async () => {
  await sender?.stop();
  await api?.close();
  receiver?.closeAllConnections();
  await new Promise((r) => receiver?.close(r));
  await ctx?.close();
});

const orderBody = async () => {
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: 5 });
  return {
    customerId: uniqueId('cust'),
    items: [{ sku, quantity: 1 }],
    amount: { amountMinor: 1_500, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  };
};

const endpointCount = async () => Number((await ctx.db.query<{ n: string }>('SELECT count(*) AS n FROM webhook_endpoints')).rows[0]!.n);

test('register, receive signed events of the order created through the API, read the attempts, replay one, delete', async () => {
  const { apiKey, id: clientId } = await createApiClient(ctx.db, uniqueId('hooked'));
  const created = await request(api.url, '/webhooks', { apiKey, body: { url: hook } });
  expect(created.status).toBe(201);
  expect(created.json).toMatchObject({ url: hook, status: 'enabled', disabledReason: null, secret: expect.stringMatching(/^whsec_/) });
  expect(created.headers.get('location')).toBe(`/webhooks/${created.json.id}`);
  const secret: string = created.json.secret;
  const endpoint: string = created.json.id;
  // The secret is never shown again, nor stored as sent.
  const listed = await request(api.url, '/webhooks', { apiKey });
  expect(listed.json).toEqual({ endpoints: [{ id: endpoint, url: hook, status: 'enabled', disabledReason: null, createdAt: created.json.createdAt }] });
  const { rows } = await ctx.db.query<{ secret_sealed: string }>('SELECT secret_sealed FROM webhook_endpoints WHERE id = $1 AND client_id = $2', [endpoint, clientId]);
  expect(rows[0]!.secret_sealed).not.toContain(secret.slice('whsec_'.length));

  const order = await request(api.url, '/orders?wait=20s', { apiKey, idempotencyKey: uniqueId('k'), body: await orderBody() });
  expect(order.status).toBe(201);
  const orderId: string = order.json.id;
  const types = async () =>
    got.filter((g) => JSON.parse(g.body).subject === orderId).map((g) => JSON.parse(g.body).type as string);
  for (let i = 0; i < 400 && (await types()).length < 2; i++) await new Promise((r) => setTimeout(r, 25));
  expect(await types()).toEqual(['io.sagaflow.order.created.v1', 'io.sagaflow.order.completed.v1']);
  for (const g of got) expect(verify(secret, g, g.body)).toBe(true);

  // The receiver has the request before the sender has its answer and commits it
  // as delivered: read the deliveries once none is pending any more.
  const readDeliveries = () => request(api.url, `/webhooks/${endpoint}/deliveries`, { apiKey });
  let deliveries = await readDeliveries();
  for (let i = 0; i < 400 && deliveries.json.deliveries.some((d: { state: string }) => d.state === 'pending'); i++) {
    await new Promise((r) => setTimeout(r, 25));
    deliveries = await readDeliveries();
  }
  expect(deliveries.status).toBe(200);
  expect(deliveries.json.deliveries.map((d: { type: string; state: string; attempts: unknown[] }) => [d.type, d.state, d.attempts.length])).toEqual([
    ['completed', 'delivered', 1],
    ['created', 'delivered', 1],
  ]);
  const first = deliveries.json.deliveries[1].id as string;
  const replay = await request(api.url, `/webhooks/${endpoint}/deliveries/${first}/replay`, { apiKey, method: 'POST' });
  expect(replay.status).toBe(202);
  for (let i = 0; i < 400 && got.filter((g) => g.id === first).length < 2; i++) await new Promise((r) => setTimeout(r, 25));
  expect(got.filter((g) => g.id === first)).toHaveLength(2);

  expect((await request(api.url, `/webhooks/${endpoint}`, { apiKey, method: 'DELETE' })).status).toBe(204);
  expectProblem(await request(api.url, `/webhooks/${endpoint}`, { apiKey, method: 'DELETE' }), 404, 'not-found');
  expect((await request(api.url, '/webhooks', { apiKey })).json).toEqual({ endpoints: [] });
});

test("another client's endpoint is as absent as an unknown one: not listed, not deleted, not replayed", async () => {
  const owner = await createApiClient(ctx.db, uniqueId('owner'));
  const other = await createApiClient(ctx.db, uniqueId('other'));
  const created = await request(api.url, '/webhooks', { apiKey: owner.apiKey, body: { url: hook } });
  const id: string = created.json.id;
  expect((await request(api.url, '/webhooks', { apiKey: other.apiKey })).json).toEqual({ endpoints: [] });
  expectProblem(await request(api.url, `/webhooks/${id}`, { apiKey: other.apiKey, method: 'DELETE' }), 404, 'not-found');
  expectProblem(await request(api.url, `/webhooks/${id}/deliveries`, { apiKey: other.apiKey }), 404, 'not-found');
  expectProblem(await request(api.url, `/webhooks/${id}/enable`, { apiKey: other.apiKey, method: 'POST' }), 404, 'not-found');
  expectProblem(await request(api.url, `/webhooks/${id}/deliveries/msg_${'0'.repeat(32)}/replay`, { apiKey: other.apiKey, method: 'POST' }), 404, 'not-found');
  expectProblem(await request(api.url, '/webhooks/not-an-id/deliveries', { apiKey: owner.apiKey }), 404, 'not-found');
  expect((await request(api.url, '/webhooks', { apiKey: owner.apiKey })).json.endpoints).toHaveLength(1);
  expectProblem(await request(api.url, '/webhooks', {}), 401, 'unauthorized');
});

test('bad input is refused with nothing written: no URL, NUL bytes, another scheme, a private address in production mode', async () => {
  const { apiKey } = await createApiClient(ctx.db, uniqueId('bad'));
  const before = await endpointCount();
  expectProblem(await request(api.url, '/webhooks', { apiKey, body: {} }), 400, 'invalid-request');
  expectProblem(await request(api.url, '/webhooks', { apiKey, body: { url: 'http://x.example/\u0000' } }), 400, 'invalid-request');
  expectProblem(await request(api.url, '/webhooks', { apiKey, body: { url: 'gopher://x.example/' } }), 400, 'invalid-request');
  expectProblem(await request(api.url, '/webhooks', { apiKey, body: { url: hook, extra: 1 } }), 400, 'invalid-request');
  expectProblem(await request(api.url, '/webhooks', { apiKey, body: 'not json' }), 400, 'invalid-request');
  const production = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue, log: () => undefined, recoveryIntervalMs: 0, webhooks: { sealingKey } });
  const unconfigured = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue, log: () => undefined, recoveryIntervalMs: 0 });
  try {
    const refused = expectProblem(await request(production.url, '/webhooks', { apiKey, body: { url: hook } }), 400, 'invalid-request');
    expect(refused.detail).toMatch(/^url: the host 127\.0\.0\.1 is a loopback or private address/);
    expectProblem(await request(unconfigured.url, '/webhooks', { apiKey, body: { url: hook } }), 501, 'webhooks-not-configured');
  } finally {
    await production.close();
    await unconfigured.close();
  }
  expect(await endpointCount()).toBe(before);
});

test('every status the webhook routes answer is documented for them in /openapi.json', async () => {
  const doc = (await request(api.url, '/openapi.json')).json;
  const { apiKey } = await createApiClient(ctx.db, uniqueId('doc'));
  const created = await request(api.url, '/webhooks', { apiKey, body: { url: hook } });
  const id: string = created.json.id;
  const unconfigured = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue, log: () => undefined, recoveryIntervalMs: 0 });
  const seen: [string, string, number][] = [];
  try {
    seen.push(
      ['/webhooks', 'post', created.status],
      ['/webhooks', 'post', (await request(api.url, '/webhooks', { apiKey, body: {} })).status],
      ['/webhooks', 'post', (await request(api.url, '/webhooks', { body: { url: hook } })).status],
      ['/webhooks', 'post', (await request(api.url, '/webhooks', { apiKey, body: 'x', contentType: 'text/plain' })).status],
      ['/webhooks', 'post', (await request(api.url, '/webhooks', { apiKey, body: 'x'.repeat(70_000) })).status],
      ['/webhooks', 'post', (await request(unconfigured.url, '/webhooks', { apiKey, body: { url: hook } })).status],
      ['/webhooks', 'get', (await request(api.url, '/webhooks', { apiKey })).status],
      ['/webhooks/{endpoint}', 'delete', (await request(api.url, `/webhooks/${id}`, { apiKey, method: 'PUT', body: {} })).status],
      ['/webhooks/{endpoint}/enable', 'post', (await request(api.url, `/webhooks/${id}/enable`, { apiKey, method: 'POST' })).status],
      ['/webhooks/{endpoint}/deliveries', 'get', (await request(api.url, `/webhooks/${id}/deliveries`, { apiKey })).status],
      ['/webhooks/{endpoint}/deliveries/{delivery}/replay', 'post', (await request(api.url, `/webhooks/${id}/deliveries/msg_x/replay`, { apiKey, method: 'POST' })).status],
      ['/webhooks/{endpoint}', 'delete', (await request(api.url, `/webhooks/${id}`, { apiKey, method: 'DELETE' })).status],
      ['/webhooks/{endpoint}', 'delete', (await request(api.url, `/webhooks/${id}`, { apiKey, method: 'DELETE' })).status],
    );
  } finally {
    await unconfigured.close();
  }
  expect(new Set(seen.map(([, , s]) => s))).toEqual(new Set([200, 201, 204, 400, 401, 404, 405, 413, 415, 501]));
  const undocumented = seen.filter(([p, m, s]) => !Object.keys(doc.paths[p][m].responses).map(Number).includes(s));
  expect(undocumented).toEqual([]);
});

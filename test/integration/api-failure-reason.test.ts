/**
 * What an order that failed on a provider tells API clients: the provider and the step, never a
 * URL, host or port. A payment provider answering 503, and one refusing connections, run the
 * real saga to its compensation; the answer to ?wait, GET /orders/:id, the order row and its
 * outbox event (what webhooks carry) are all checked.
 */
import net from 'node:net';
import { createApiClient } from '../../src/api/auth';
import type { CreateOrderRequest } from '../../src/api/schemas';
import { startApi, type RunningApi } from '../../src/api/server';
import { createSagaWorker } from '../../workers/worker';
import { EXTERNAL_STEP_ATTEMPTS } from '../../workflows/order/activity-options';
import { addFault, createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { eventually, request } from '../helpers/api';

let ctx: TestContext;
let apiKey: string;
/** Sagas whose payment provider is the test's own, faults and all. */
let api: RunningApi;
/** Sagas whose payment provider's address refuses connections until the test lets it through. */
let refusingApi: RunningApi;
let refusedPort: number;
const queue = uniqueId('reasons');
const refusingQueue = uniqueId('reasons-refused');

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  ctx = await createTestContext('api_reasons');
  refusedPort = await freePort();
  const worker = (taskQueue: string, paymentProviderUrl: string) =>
    createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: { ...ctx.deps, paymentProviderUrl } });
  ctx.startWorker(await worker(queue, ctx.payment.url));
  ctx.startWorker(await worker(refusingQueue, `http://127.0.0.1:${refusedPort}`));
  api = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue: queue, log: () => undefined });
  refusingApi = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue: refusingQueue, log: () => undefined });
  apiKey = (await createApiClient(ctx.db, uniqueId('client'))).apiKey;
});

afterAll(async () => {
  await api?.close();
  await refusingApi?.close();
  await ctx?.close();
});

async function stockedBody(): Promise<CreateOrderRequest> {
  const body: CreateOrderRequest = {
    customerId: uniqueId('cust'),
    items: [{ sku: uniqueId('sku'), quantity: 1 }],
    amount: { amountMinor: 1_299, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada Lovelace', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  };
  await seedInventory(ctx.db, { [body.items[0]!.sku]: 10 });
  return body;
}

/** Asserts `text` names no URL, IP address or local port of the test's services. */
function expectNoAddress(text: string): void {
  expect(text).not.toMatch(/[a-z]+:\/\//i);
  expect(text).not.toMatch(/\b\d{1,3}(?:\.\d{1,3}){3}\b/);
  expect(text).not.toMatch(/localhost/i);
  for (const port of [new URL(ctx.payment.url).port, new URL(ctx.carrier.url).port, String(refusedPort)]) expect(text).not.toContain(port);
}

/** The failure texts of an order view or event: none holds a host:port either. */
function expectNoHostPort(...texts: (string | null | undefined)[]): void {
  for (const t of texts) if (t) expect(t).not.toMatch(/[\w\]]:\d{2,5}\b/);
}

/** Everything a client can read about the order: GET, the row's reason, and its outbox events. */
async function clientFacing(base: string, orderId: string): Promise<{ view: any; reason: string | null; events: string[] }> {
  const view = (await request(base, `/orders/${orderId}`, { apiKey })).json;
  const row = await ctx.db.query<{ failure_reason: string | null }>('SELECT failure_reason FROM orders WHERE id = $1', [orderId]);
  const events = await ctx.db.query<{ data: unknown }>('SELECT data FROM order_events WHERE order_id = $1 ORDER BY position', [orderId]);
  return { view, reason: row.rows[0]!.failure_reason, events: events.rows.map((e) => JSON.stringify(e.data)) };
}

test('a provider answering 503 to every attempt: the order fails naming the provider and the step, with no address anywhere', async () => {
  // Every attempt of the charge step meets a 503; the refund's look-up afterwards is answered.
  await addFault(ctx.payment.url, { kind: 'error', status: 503, path: '/charges', times: EXTERNAL_STEP_ATTEMPTS });
  const res = await request(api.url, '/orders?wait=30s', { method: 'POST', apiKey, idempotencyKey: uniqueId('k'), body: await stockedBody() });
  expect(res.status).toBe(201);
  expect(res.json.saga).toMatchObject({
    status: 'compensated',
    failure: { type: 'ProviderUnavailable', message: 'payment provider answered 503 to charge-payment' },
  });
  expect(res.json.failureReason).toBe('ProviderUnavailable: payment provider answered 503 to charge-payment');
  expectNoAddress(res.text);
  expectNoHostPort(res.json.failureReason, res.json.saga.failure.message);

  const { view, reason, events } = await clientFacing(api.url, res.json.id);
  expect(view).toMatchObject({ status: 'failed', failureReason: 'ProviderUnavailable: payment provider answered 503 to charge-payment' });
  expect(reason).toBe(view.failureReason);
  expect(events.some((e) => e.includes('payment provider answered 503 to charge-payment'))).toBe(true);
  for (const text of [JSON.stringify(view), ...events]) expectNoAddress(text);
  expectNoHostPort(view.failureReason, view.saga.failure?.message, ...events.map((e) => JSON.parse(e).failureReason));
});

test('a provider refusing connections: the reason names it and the step (ECONNREFUSED), never its address, while compensating and after', async () => {
  const res = await request(refusingApi.url, '/orders', { method: 'POST', apiKey, idempotencyKey: uniqueId('k'), body: await stockedBody() });
  expect(res.status).toBe(201);
  const orderId: string = res.json.id;

  // The charge fails for good; the refund cannot learn what to reverse while the address refuses.
  const compensating = await eventually(async () => {
    const view = (await request(refusingApi.url, `/orders/${orderId}`, { apiKey })).json;
    return view?.saga?.status === 'compensating' ? view : undefined;
  }, 'the saga to compensate', 600, 100);
  expect(compensating.saga.failure).toEqual({ type: 'ProviderUnavailable', message: 'payment provider unreachable for charge-payment (ECONNREFUSED)' });
  expectNoAddress(JSON.stringify(compensating));
  expectNoHostPort(compensating.saga.failure.message);

  // The address comes back (a proxy to the provider): the refund goes through and the order closes.
  const upstream = Number(new URL(ctx.payment.url).port);
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const server = net.connect(upstream, '127.0.0.1');
    for (const s of [client, server]) {
      sockets.add(s);
      s.on('error', () => undefined).on('close', () => sockets.delete(s));
    }
    client.pipe(server).pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(refusedPort, '127.0.0.1', resolve));
  try {
    const result = (await ctx.client.workflow.getHandle(res.json.saga.workflowId).result()) as { status: string };
    expect(result.status).toBe('compensated');
  } finally {
    sockets.forEach((s) => s.destroy());
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
  }

  const { view, reason, events } = await clientFacing(refusingApi.url, orderId);
  expect(view).toMatchObject({
    status: 'failed',
    failureReason: 'ProviderUnavailable: payment provider unreachable for charge-payment (ECONNREFUSED)',
    saga: { status: 'compensated', failure: { type: 'ProviderUnavailable', message: 'payment provider unreachable for charge-payment (ECONNREFUSED)' } },
  });
  expect(reason).toBe(view.failureReason);
  for (const text of [JSON.stringify(view), ...events]) expectNoAddress(text);
  expectNoHostPort(view.failureReason, view.saga.failure?.message, ...events.map((e) => JSON.parse(e).failureReason));
});

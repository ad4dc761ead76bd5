/**
 * The API's throttles against the real PostgreSQL and Temporal server: a client over its rate
 * gets 429 with Retry-After while another client goes on, and an address that sends wrong
 * keys is refused before they are looked up while valid clients go on, then served again
 * once its window passes. Never a 5xx. The sagas run on a queue no worker polls (only the
 * door is under test) and are ended afterwards.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { createApiClient } from '../../src/api/auth';
import type { CreateOrderRequest } from '../../src/api/schemas';
import { startApi, type RunningApi } from '../../src/api/server';
import { SagaMetrics } from '../../src/observability/metrics';
import { createTestContext, uniqueId, type TestContext } from '../helpers/context';
import { eventually, expectProblem, request, type ApiResponse } from '../helpers/api';

const AUTH_FAILURES = 10;
const AUTH_WINDOW_MS = 8_000;
let ctx: TestContext;
let api: RunningApi;
const metrics = new SagaMetrics({ role: 'api' });
const idleQueue = uniqueId('api-throttle-idle');
const workflowIds = new Set<string>();

beforeAll(async () => {
  ctx = await createTestContext('api_throttle');
  api = await startApi({
    db: ctx.db,
    temporal: ctx.client,
    taskQueue: idleQueue,
    log: () => undefined,
    recoveryIntervalMs: 0,
    metrics,
    // One token every 20 s: a client's bucket refills far slower than any test runs.
    throttle: { perSecond: 0.05, burst: 3, authFailures: AUTH_FAILURES, authWindowMs: AUTH_WINDOW_MS },
  });
});

afterAll(async () => {
  await api?.close();
  await Promise.allSettled([...workflowIds].map((id) => ctx.client.workflow.getHandle(id).terminate('test over')));
  await ctx?.close();
});

const orderBody = (): CreateOrderRequest => ({
  customerId: uniqueId('cust'),
  items: [{ sku: uniqueId('sku'), quantity: 1 }],
  amount: { amountMinor: 1_299, currency: 'EUR' },
  paymentToken: 'tok_visa',
  shippingAddress: { name: 'Ada Lovelace', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
});

function noted(res: ApiResponse): ApiResponse {
  if (typeof res.json?.saga?.workflowId === 'string') workflowIds.add(res.json.saga.workflowId);
  return res;
}

const postOrder = async (apiKey: string, idempotencyKey = uniqueId('k')) =>
  noted(await request(api.url, '/orders', { method: 'POST', apiKey, idempotencyKey, body: orderBody() }));

/** POST /orders from another local address (127.0.0.2 reaches the API on 127.0.0.1 as a different client machine would). */
function postOrderFrom(localAddress: string, apiKey: string): Promise<ApiResponse> {
  const { hostname, port } = new URL(api.url);
  const body = JSON.stringify(orderBody());
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: hostname,
        port,
        localAddress,
        method: 'POST',
        path: '/orders',
        headers: { authorization: `Bearer ${apiKey}`, 'idempotency-key': uniqueId('k'), 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let json: any;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          const headers = new Headers(Object.entries(res.headers).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)] as [string, string]])));
          resolve(noted({ status: res.statusCode ?? 0, headers, text, json }));
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Runs `tasks` with at most `width` at once. */
async function pooled<T>(tasks: (() => Promise<T>)[], width: number): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < tasks.length) {
        const i = next++;
        out[i] = await tasks[i]!();
      }
    }),
  );
  return out;
}

async function throttled(reason: string): Promise<number> {
  const text = await metrics.text();
  return Number(new RegExp(`^sagaflow_api_throttled_requests_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

test('a client over its rate gets 429 with Retry-After and nothing is written; another client goes on with 201', async () => {
  const greedy = await createApiClient(ctx.db, uniqueId('greedy'));
  const other = await createApiClient(ctx.db, uniqueId('other'));
  const before = await throttled('rate_limit');

  const burst = await Promise.all([0, 1, 2].map(() => postOrder(greedy.apiKey)));
  expect(burst.map((r) => r.status)).toEqual([201, 201, 201]);

  const key = uniqueId('over');
  const over = await postOrder(greedy.apiKey, key);
  const problem = expectProblem(over, 429, 'rate-limited');
  expect(problem.detail).toMatch(/requests per second/);
  const retryAfter = Number(over.headers.get('retry-after'));
  expect(Number.isInteger(retryAfter) && retryAfter >= 1).toBe(true);
  // Refused before anything was written: no key row, so the same key later starts the order afresh.
  const rows = await ctx.db.query('SELECT 1 FROM idempotency_keys WHERE client_id = $1 AND key = $2', [greedy.id, key]);
  expect(rows.rowCount).toBe(0);
  // Every route the client calls counts against the same bucket.
  expectProblem(await request(api.url, `/orders/${burst[0]!.json.id}`, { apiKey: greedy.apiKey }), 429, 'rate-limited');

  // The other client is untouched, while the first stays refused.
  const others = await Promise.all([0, 1, 2].map(() => postOrder(other.apiKey)));
  expect(others.map((r) => r.status)).toEqual([201, 201, 201]);
  expect((await postOrder(greedy.apiKey)).status).toBe(429);
  expect(await throttled('rate_limit')).toBe(before + 3);
});

test('1,000 wrong keys from one address: 401s up to the limit then 429s, never a 5xx; valid clients go on; the address is served again after the window', async () => {
  // A client working from this address before the burst, one that never was, and both elsewhere.
  const regular = await createApiClient(ctx.db, uniqueId('regular'));
  const newcomer = await createApiClient(ctx.db, uniqueId('newcomer'));
  expect((await postOrder(regular.apiKey)).status).toBe(201);
  const before = await throttled('auth_failures');

  const wrong = Array.from({ length: 1000 }, () => `sk_${randomBytes(24).toString('base64url')}`);
  const burstStarted = Date.now();
  const answers = await pooled(
    wrong.map((k) => () => request(api.url, '/orders', { method: 'POST', apiKey: k, idempotencyKey: uniqueId('w'), body: orderBody() })),
    100,
  );
  const statuses = answers.map((a) => a.status);
  expect(new Set(statuses)).toEqual(new Set([401, 429]));
  // Only the first `limit` keys of each window were looked up: the rest were refused before the
  // database. One window, unless a slow machine stretched the burst past it.
  const windows = 1 + Math.floor((Date.now() - burstStarted) / AUTH_WINDOW_MS);
  expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(AUTH_FAILURES * windows);
  const refused = answers.find((a) => a.status === 429)!;
  expectProblem(refused, 429, 'authentication-throttled');
  const retryAfter = Number(refused.headers.get('retry-after'));
  expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= AUTH_WINDOW_MS / 1000).toBe(true);
  expect(await throttled('auth_failures')).toBe(before + statuses.filter((s) => s === 429).length);

  // While the address is refused: the client that was working from it goes on; a key it never
  // sent waits like any unknown one; from another address, that key is served and wrong keys
  // are looked up as ever. A key that has authenticated lately is let through from here too.
  expect((await postOrder(regular.apiKey)).status).toBe(201);
  expectProblem(await postOrder(newcomer.apiKey), 429, 'authentication-throttled');
  expect((await postOrderFrom('127.0.0.2', newcomer.apiKey)).status).toBe(201);
  expectProblem(await postOrderFrom('127.0.0.2', wrong[0]!), 401, 'unauthorized');
  expect((await postOrder(newcomer.apiKey)).status).toBe(201);
  expectProblem(await request(api.url, '/orders', { method: 'POST', apiKey: wrong[1]!, idempotencyKey: uniqueId('w'), body: orderBody() }), 429);

  // After the window the address is served again: a wrong key is looked up (a plain 401), and a
  // client it never sent before gets in.
  const served = await eventually(
    async () => {
      const res = await request(api.url, '/orders', { method: 'POST', apiKey: wrong[2]!, idempotencyKey: uniqueId('w'), body: orderBody() });
      return res.status === 429 ? undefined : res;
    },
    'the address to be served again',
    200,
    250,
  );
  expectProblem(served, 401, 'unauthorized');
  const latecomer = await createApiClient(ctx.db, uniqueId('latecomer'));
  expect((await postOrder(latecomer.apiKey)).status).toBe(201);
});

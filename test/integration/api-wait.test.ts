/**
 * `POST /orders?wait=` keeps its bound: a wait that ends without the saga's result ends the
 * long poll for that result too, so waits piling up under load do not leave polls behind
 * (each one holds a stream on the API's connection to Temporal until its saga ends). The
 * polls are counted on the API's own connection by a gRPC interceptor. No timing is
 * asserted; `npm run bench -- --waits 200` prints the answer times.
 */
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import { createApiClient } from '../../src/api/auth';
import { createOrder } from '../../src/api/create-order';
import type { CreateOrderRequest } from '../../src/api/schemas';
import { startApi, type RunningApi } from '../../src/api/server';
import { clientConnectionOptions } from '../../src/temporal-connect';
import { callCounter, type CallCounter } from '../../dev/grpc-calls';
import { createTestContext, uniqueId, type TestContext } from '../helpers/context';
import { request } from '../helpers/api';

const RESULT_POLL = 'GetWorkflowExecutionHistory';
let ctx: TestContext;
let calls: CallCounter;
let connection: Connection;
let temporal: Client;
let api: RunningApi;
let client: { id: string; apiKey: string };
/** A task queue no worker polls: the sagas started there never end, so every wait runs out. */
const idleQueue = uniqueId('api-wait-idle');
const workflowIds = new Set<string>();

beforeAll(async () => {
  ctx = await createTestContext('api_wait');
  calls = callCounter();
  connection = await Connection.connect(
    clientConnectionOptions({
      address: process.env.TEMPORAL_ADDRESS!,
      interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions()), calls.interceptor],
    }),
  );
  temporal = new Client({ connection, namespace: ctx.namespace });
  api = await startApi({ db: ctx.db, temporal, taskQueue: idleQueue, log: () => undefined, recoveryIntervalMs: 0 });
  client = await createApiClient(ctx.db, uniqueId('client'));
});

afterAll(async () => {
  await api?.close();
  await Promise.allSettled([...workflowIds].map((id) => ctx.client.workflow.getHandle(id).terminate('test over')));
  await connection?.close();
  await ctx?.close();
});

const orderBody = (): CreateOrderRequest => ({
  customerId: uniqueId('cust'),
  items: [{ sku: uniqueId('sku'), quantity: 1 }],
  amount: { amountMinor: 1_299, currency: 'EUR' },
  paymentToken: 'tok_visa',
  shippingAddress: { name: 'Ada Lovelace', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
});

test('60 concurrent ?wait=3s on sagas that cannot end: all 201 running, keys completed with that answer, no result poll left open', async () => {
  const keys = Array.from({ length: 60 }, () => uniqueId('wait'));
  const startedBefore = calls.started(RESULT_POLL);
  const answers = await Promise.all(
    keys.map((key) => request(api.url, '/orders?wait=3s', { method: 'POST', apiKey: client.apiKey, idempotencyKey: key, body: orderBody() })),
  );

  expect(answers.map((a) => a.status)).toEqual(keys.map(() => 201));
  for (const a of answers) {
    workflowIds.add(a.json.saga.workflowId);
    // 'unknown' when the saga's describe could not answer within its own deadline (a busy machine).
    expect(a.json).toMatchObject({ status: 'pending', saga: { status: expect.stringMatching(/^(running|unknown)$/) } });
  }
  // The requests did wait on their sagas' results (each whose saga started before its wait ran
  // out), and every one of those polls has ended with its wait.
  expect(calls.started(RESULT_POLL) - startedBefore).toBeGreaterThan(0);
  expect(calls.open(RESULT_POLL)).toBe(0);

  // Durable: each key holds the answer it gave, each order its running saga.
  const rows = await ctx.db.query<{ key: string; state: string; response_status: number; response_body: string; order_status: string }>(
    `SELECT k.key, k.state, k.response_status, k.response_body, o.status AS order_status
       FROM idempotency_keys k JOIN orders o ON o.id = k.resource_id
      WHERE k.client_id = $1 AND k.key = ANY($2)`,
    [client.id, keys],
  );
  expect(rows.rows).toHaveLength(keys.length);
  const byKey = new Map(rows.rows.map((r) => [r.key, r]));
  keys.forEach((key, i) => {
    expect(byKey.get(key)).toMatchObject({ state: 'completed', response_status: 201, response_body: answers[i]!.text, order_status: 'pending' });
  });
  const described = await Promise.all(answers.map((a) => ctx.client.workflow.getHandle(a.json.saga.workflowId).describe()));
  expect(new Set(described.map((d) => d.status.name))).toEqual(new Set(['RUNNING']));

  // The same orders read back while their sagas still wait for a worker: running, and still no poll open.
  const again = await request(api.url, `/orders/${answers[0]!.json.id}`, { apiKey: client.apiKey });
  expect(again.status).toBe(200);
  expect(again.json.saga.status).toBe('running');
  expect(calls.open(RESULT_POLL)).toBe(0);
});

test('the wait counts from the request’s arrival: one already spent before the saga started polls for no result', async () => {
  const order = orderBody();
  const startedBefore = calls.started(RESULT_POLL);
  const outcome = await createOrder(
    { db: ctx.db, temporal, taskQueue: idleQueue, keyTtlMs: 3_600_000, leaseMs: 10_000 },
    // Arrived 5 s ago with ?wait=5s: the wait is over before the saga is even started.
    { clientId: client.id, idempotencyKey: uniqueId('spent'), raw: order, order, waitMs: 5000, arrivedAt: Date.now() - 5000 },
  );
  expect(outcome).toMatchObject({ kind: 'answer', status: 201, replayed: false });
  if (outcome.kind !== 'answer') throw new Error('no answer');
  const view = JSON.parse(outcome.body);
  workflowIds.add(view.saga.workflowId);
  expect(view.saga.status).toBe('running');
  expect(calls.started(RESULT_POLL)).toBe(startedBefore);
  expect(calls.open(RESULT_POLL)).toBe(0);
});

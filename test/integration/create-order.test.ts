/**
 * The API's use case (src/api/create-order.ts) called directly, on the real
 * PostgreSQL and Temporal server: what it answers, in the outcome's own terms,
 * where the HTTP tests (api.test.ts) see only the protocol's answer. A fresh
 * request, its replay, a request healed after it died past its commit, a key
 * whose order row is gone, a saga that cannot start, and a wait cut short by
 * the saga's end.
 */
import { randomBytes } from 'node:crypto';
import { Client } from '@temporalio/client';
import { createOrder, type CreateOrderCommand, type CreateOrderDeps } from '../../src/api/create-order';
import { createApiClient } from '../../src/api/auth';
import type { CreateOrderRequest } from '../../src/api/schemas';
import { inTransaction } from '../../src/db/pool';
import { claimKey } from '../../packages/toolkit/src/edge/keys';
import { fingerprint } from '../../packages/toolkit/src/ledger/fingerprint';
import { insertOrder } from '../../src/orders/repository';
import { orderWorkflowId } from '../../workflows/order/ids';
import { OrderIdKey } from '../../workflows/order/search-attributes';
import { createSagaWorker } from '../../workers/worker';
import { createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;
let clientId: string;
const taskQueue = uniqueId('create-order');
/** A task queue no worker polls: a saga started there waits at its first step. */
const idleQueue = uniqueId('create-order-idle');
const started = new Set<string>();

beforeAll(async () => {
  ctx = await createTestContext('create_order');
  ctx.startWorker(await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps }));
  clientId = (await createApiClient(ctx.db, uniqueId('client'))).id;
});

afterEach(async () => {
  const ids = [...started];
  started.clear();
  await Promise.all(
    ids.map(async (id) => {
      const handle = ctx.client.workflow.getHandle(id);
      const { status } = await handle.describe();
      if (status.name === 'RUNNING') await handle.terminate('test over');
      else await handle.result().catch(() => undefined);
    }),
  );
});

afterAll(async () => {
  await ctx?.close();
});

function deps(overrides: Partial<CreateOrderDeps> = {}): CreateOrderDeps {
  return { db: ctx.db, temporal: ctx.client, taskQueue, keyTtlMs: 3_600_000, leaseMs: 10_000, ...overrides };
}

async function command(overrides: Partial<CreateOrderCommand> = {}): Promise<CreateOrderCommand> {
  const order: CreateOrderRequest = {
    customerId: uniqueId('cust'),
    items: [{ sku: uniqueId('sku'), quantity: 1 }],
    amount: { amountMinor: 1_299, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada Lovelace', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  };
  await seedInventory(ctx.db, Object.fromEntries(order.items.map((i) => [i.sku, 10])));
  return { clientId, idempotencyKey: uniqueId('key'), raw: order, order, waitMs: 0, ...overrides };
}

async function run(d: CreateOrderDeps, cmd: CreateOrderCommand) {
  const outcome = await createOrder(d, cmd);
  if (outcome.kind === 'answer') started.add(orderWorkflowId(outcome.orderId));
  return outcome;
}

async function keyRow(cmd: CreateOrderCommand) {
  const res = await ctx.db.query<{ state: string; response_status: number | null; response_body: string | null; lease_left_ms: number }>(
    `SELECT state, response_status, response_body, (extract(epoch FROM locked_until - now()) * 1000)::int AS lease_left_ms
       FROM idempotency_keys WHERE client_id = $1 AND key = $2`,
    [cmd.clientId, cmd.idempotencyKey],
  );
  return res.rows[0];
}

/** What a request that died right after its commit leaves: the key (lease already over) and the order, no saga. */
async function diedAfterCommit(cmd: CreateOrderCommand, withOrder = true): Promise<string> {
  const orderId = `ord_${randomBytes(10).toString('hex')}`;
  await inTransaction(ctx.db, async (tx) => {
    await claimKey(tx, {
      clientId: cmd.clientId,
      key: cmd.idempotencyKey,
      fingerprint: fingerprint(cmd.raw),
      newResourceId: orderId,
      ttlMs: 3_600_000,
      leaseMs: 0,
    });
    if (withOrder) await insertOrder(tx, { ...cmd.order, orderId }, { clientId: cmd.clientId, workflowId: orderWorkflowId(orderId) });
  });
  return orderId;
}

test('a fresh request: answered 201 at once with the saga running, not replayed, not healed; the key keeps the same bytes', async () => {
  const cmd = await command();
  const outcome = await run(deps(), cmd);
  if (outcome.kind !== 'answer') throw new Error(`expected an answer, got ${JSON.stringify(outcome)}`);
  expect({ status: outcome.status, replayed: outcome.replayed, healed: outcome.healed }).toEqual({ status: 201, replayed: false, healed: false });
  // Answering at once, it does not ask the saga (which, with a worker, would tell its steps too).
  expect(JSON.parse(outcome.body)).toMatchObject({ id: outcome.orderId, status: 'pending', saga: { workflowId: orderWorkflowId(outcome.orderId), status: 'running' } });
  expect(Object.keys(JSON.parse(outcome.body).saga).sort()).toEqual(['status', 'workflowId']);
  expect(await keyRow(cmd)).toMatchObject({ state: 'completed', response_status: 201, response_body: outcome.body });

  const again = await run(deps(), cmd);
  expect(again).toEqual({ kind: 'answer', orderId: outcome.orderId, status: 201, body: outcome.body, replayed: true, healed: false });
});

test('a request that died after its commit is healed by its retry: the saga starts, healed is true, and the answer tells the live saga', async () => {
  const cmd = await command();
  const orderId = await diedAfterCommit(cmd);
  const outcome = await run(deps(), cmd);
  expect(outcome).toMatchObject({ kind: 'answer', orderId, status: 201, replayed: false, healed: true });
  if (outcome.kind !== 'answer') return;
  // A healed request asks the saga what it is (its query answers with its steps), not what was started.
  expect(JSON.parse(outcome.body).saga).toMatchObject({ workflowId: orderWorkflowId(orderId), completedSteps: expect.any(Array) });
  expect(await keyRow(cmd)).toMatchObject({ state: 'completed', response_status: 201, response_body: outcome.body });
  const described = await ctx.client.workflow.getHandle(orderWorkflowId(orderId)).describe();
  expect(described.taskQueue).toBe(taskQueue);
});

test('a claimed key whose order row is gone: a clear error, and no saga started for it', async () => {
  const cmd = await command();
  const orderId = await diedAfterCommit(cmd, false);
  await expect(run(deps(), cmd)).rejects.toThrow(`order ${orderId} missing under its idempotency key`);
  await expect(ctx.client.workflow.getHandle(orderWorkflowId(orderId)).describe()).rejects.toThrow(/not found/i);
  expect(await keyRow(cmd)).toMatchObject({ state: 'in_flight', response_status: null });
});

test('a saga that cannot start: unavailable with the reason, the lease released at once so a retry need not wait it out', async () => {
  const cmd = await command();
  const nowhere = new Client({ connection: ctx.client.connection, namespace: uniqueId('no-such-namespace') });
  const outcome = await run(deps({ temporal: nowhere, leaseMs: 600_000 }), cmd);
  expect(outcome).toMatchObject({ kind: 'unavailable', message: expect.stringMatching(/^could not start the saga: .*namespace/i) });
  const key = await keyRow(cmd);
  expect(key).toMatchObject({ state: 'in_flight' });
  expect(key!.lease_left_ms).toBeLessThanOrEqual(0);

  // The retry, with Temporal back, heals it at once.
  const retry = await run(deps(), cmd);
  expect(retry).toMatchObject({ kind: 'answer', status: 201, healed: true });
});

test('a wait cut short by the saga ending without a result (terminated) answers what the server says, not "running"', async () => {
  const cmd = await command({ waitMs: 20_000 });
  const pending = run(deps({ taskQueue: idleQueue }), cmd);
  // The saga waits on a queue no worker polls; once it exists, end it from outside.
  const workflowId = await (async () => {
    for (let i = 0; i < 100; i++) {
      const res = await ctx.db.query<{ workflow_id: string }>(
        `SELECT o.workflow_id FROM idempotency_keys k JOIN orders o ON o.id = k.resource_id
          WHERE k.client_id = $1 AND k.key = $2 AND o.saga_started_at IS NOT NULL`,
        [cmd.clientId, cmd.idempotencyKey],
      );
      if (res.rows[0]) return res.rows[0].workflow_id;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the saga never started');
  })();
  await ctx.client.workflow.getHandle(workflowId).terminate('ended from outside');
  const outcome = await pending;
  expect(outcome).toMatchObject({ kind: 'answer', status: 201, replayed: false });
  if (outcome.kind !== 'answer') return;
  expect(JSON.parse(outcome.body).saga).toEqual({ workflowId, status: 'terminated' });
  expect(await keyRow(cmd)).toMatchObject({ state: 'completed', response_body: outcome.body });
});

test('a wait that sees the saga end answers with its result, and the order row as the saga left it', async () => {
  const cmd = await command({ waitMs: 20_000 });
  const outcome = await run(deps(), cmd);
  if (outcome.kind !== 'answer') throw new Error(`expected an answer, got ${JSON.stringify(outcome)}`);
  const body = JSON.parse(outcome.body);
  expect(body.status).toBe('completed');
  // The saga's own result (no current step: it has none left), not a status query after it.
  expect(body.saga).toEqual({
    workflowId: orderWorkflowId(outcome.orderId),
    status: 'completed',
    completedSteps: expect.arrayContaining(['record-order']),
    compensations: [],
  });
});

test('a wait that runs out while the saga still runs answers then, with the saga running', async () => {
  const cmd = await command({ waitMs: 300 });
  const outcome = await run(deps({ taskQueue: idleQueue }), cmd);
  if (outcome.kind !== 'answer') throw new Error(`expected an answer, got ${JSON.stringify(outcome)}`);
  expect(JSON.parse(outcome.body).saga).toMatchObject({ workflowId: orderWorkflowId(outcome.orderId), status: 'running' });
  expect(await keyRow(cmd)).toMatchObject({ state: 'completed', response_body: outcome.body });
});

test.each([
  [true, 'ord'],
  [false, undefined],
])('searchAttributes %s: the saga is started with its search attributes, or without them', async (searchAttributes, expected) => {
  const cmd = await command();
  const outcome = await run(deps({ searchAttributes }), cmd);
  if (outcome.kind !== 'answer') throw new Error(`expected an answer, got ${JSON.stringify(outcome)}`);
  const described = await ctx.client.workflow.getHandle(orderWorkflowId(outcome.orderId)).describe();
  expect(described.typedSearchAttributes.get(OrderIdKey)?.slice(0, 3)).toBe(expected);
});

/**
 * Commands at awkward moments, against the real Temporal dev server, real
 * PostgreSQL and real HTTP: a cancel before any worker runs, a cancel while the
 * first step waits for its queue, a cancel of a saga that was never started or
 * has closed, and orders abandoned between their commit and their saga's start.
 * Every outcome is asserted from rows.
 */
import { randomBytes } from 'node:crypto';
import { Client } from '@temporalio/client';
import { createSagaWorker, type SagaWorker } from '../../workers/worker';
import { startApi, type RunningApi } from '../../src/api/server';
import { createApiClient } from '../../src/api/auth';
import type { CreateOrderRequest } from '../../src/api/schemas';
import { inTransaction } from '../../src/db/pool';
import { fingerprint } from '../../packages/toolkit/src/ledger/fingerprint';
import { insertOrder } from '../../src/orders/repository';
import { recoverAbandonedOrders } from '../../src/orders/recovery';
import type { QueueRole } from '../../workflows/order/queues';
import { statusQuery } from '../../workflows/order-saga';
import { orderWorkflowId } from '../../workflows/order/ids';
import { Step } from '../../workflows/order/steps';
import { addFault, createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { eventually, expectProblem, request } from '../helpers/api';
import { spawnNode, workerEnv } from '../helpers/worker-process';
import { reconcileOrder } from '../../dev/services/reconcile';

let ctx: TestContext;
let client: { id: string; apiKey: string };
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  ctx = await createTestContext('reliability');
  client = await createApiClient(ctx.db, uniqueId('rel'));
});

afterEach(async () => {
  await fetch(`${ctx.payment.url}/__faults`, { method: 'DELETE' });
  while (cleanups.length) await cleanups.pop()!();
});

afterAll(async () => {
  await ctx?.close();
});

/** An API on its own task queue; the recovery job only where a test asks for it. */
async function api(taskQueue: string, opts: { temporal?: Client; leaseMs?: number; recoveryIntervalMs?: number } = {}): Promise<RunningApi> {
  const running = await startApi({
    db: ctx.db,
    temporal: opts.temporal ?? ctx.client,
    taskQueue,
    log: () => undefined,
    leaseMs: opts.leaseMs,
    recoveryIntervalMs: opts.recoveryIntervalMs ?? 0,
  });
  cleanups.push(() => running.close());
  return running;
}

async function worker(taskQueue: string, queues?: QueueRole[]): Promise<SagaWorker> {
  const w = await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps, queues });
  const stop = ctx.startWorker(w);
  cleanups.push(stop);
  return w;
}

async function body(): Promise<CreateOrderRequest> {
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: 10 });
  return {
    customerId: uniqueId('cust'),
    items: [{ sku, quantity: 2 }],
    amount: { amountMinor: 1_500, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada Lovelace', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  };
}

const post = (base: string, path: string, payload?: unknown, idempotencyKey?: string) =>
  request(base, path, { method: 'POST', apiKey: client.apiKey, idempotencyKey, body: payload });

async function createOrder(base: string): Promise<{ id: string; sku: string }> {
  const b = await body();
  const res = await post(base, '/orders', b, uniqueId('key'));
  if (res.status !== 201) throw new Error(`POST /orders: ${res.status} ${res.text}`);
  return { id: res.json.id as string, sku: b.items[0]!.sku };
}

const orderRow = async (id: string) =>
  (await ctx.db.query<{ status: string; failure_reason: string | null; saga_started_at: Date | null }>(
    `SELECT status, failure_reason, saga_started_at FROM orders WHERE id = $1`,
    [id],
  )).rows[0];

const ledgerState = async (key: string) =>
  (await ctx.db.query<{ state: string }>(`SELECT state FROM step_ledger WHERE key = $1`, [key])).rows[0]?.state;

const stock = async (sku: string) =>
  (await ctx.db.query<{ on_hand: number; reserved: number }>(`SELECT on_hand, reserved FROM inventory WHERE sku = $1`, [sku])).rows[0];

describe('every accepted cancel closes its order', () => {
  test('a cancel sent while no worker runs: 202, and once a worker comes the order ends cancelled, stock untouched', async () => {
    const queue = uniqueId('rel-idle');
    const { url } = await api(queue);
    const order = await createOrder(url);
    // The update waits on the server; it reaches the saga with its first workflow task, before any step.
    const cancel = post(url, `/orders/${order.id}/cancel`, { reason: 'changed my mind' });
    await new Promise((r) => setTimeout(r, 500));
    await worker(queue);

    expect((await cancel).status).toBe(202);
    const result = await ctx.client.workflow.getHandle(orderWorkflowId(order.id)).result();
    expect(result.status).toBe('cancelled');
    expect(await orderRow(order.id)).toEqual(expect.objectContaining({ status: 'cancelled' }));
    expect((await orderRow(order.id))!.failure_reason).toContain('changed my mind');
    // The abandoned first step is tombstoned: no late attempt can record it now.
    expect(await ledgerState(`${orderWorkflowId(order.id)}/${Step.recordOrder}`)).toBe('cancelled');
    expect(await stock(order.sku)).toEqual({ on_hand: 10, reserved: 0 });

    // Asking again gets the first answer; GET agrees with the saga.
    expect((await post(url, `/orders/${order.id}/cancel`)).status).toBe(202);
    const got = await request(url, `/orders/${order.id}`, { apiKey: client.apiKey });
    expect(got.json).toEqual(expect.objectContaining({ status: 'cancelled', saga: expect.objectContaining({ status: 'cancelled' }) }));
  });

  test('a cancel while record-order is held up in flight closes the row the API inserted', async () => {
    const queue = uniqueId('rel-heldup');
    const { url } = await api(queue);
    await worker(queue);
    // The ledger's table locked: record-order (a local activity in the workflow's worker) waits at its claim.
    const lock = await ctx.db.connect();
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE step_ledger IN EXCLUSIVE MODE');
    let handle;
    let order;
    let cancel: ReturnType<typeof post> | undefined;
    try {
      order = await createOrder(url);
      handle = ctx.client.workflow.getHandle(orderWorkflowId(order.id));
      // Read from PostgreSQL: a query is not answered while the saga's steps run in their workflow task.
      await eventually(
        async () => ((await ctx.db.query(`SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'step_ledger'::regclass`)).rowCount ? true : undefined),
        'record-order to wait at its claim',
      );
      // A cancel that comes while only local steps run is answered once they have: they may meet a
      // failure that already decided how the saga ends. Nothing is answered while the ledger is locked.
      cancel = post(url, `/orders/${order.id}/cancel`, { reason: 'too slow' });
      const early = await Promise.race([cancel.then((r) => r.status), new Promise((r) => setTimeout(() => r('unanswered'), 1500))]);
      expect(early).toBe('unanswered');
      // The saga's steps run in one workflow task: the cancel reaches it when the SDK heartbeats that
      // task, at 80% of its 10 s timeout. A step held up past that meets the cancel when it is freed.
      await new Promise((r) => setTimeout(r, 8500));
      // Nothing can touch the row while the ledger is locked: not the step, not its undo.
      expect((await orderRow(order.id))!.status).toBe('pending');
    } finally {
      await lock.query('COMMIT');
      lock.release();
    }
    expect((await cancel!).status).toBe(202);
    expect((await handle.result()).status).toBe('cancelled');
    expect((await orderRow(order.id))!.status).toBe('cancelled');
    expect(await ledgerState(`${handle.workflowId}/${Step.recordOrder}`)).toBe('cancelled');
    expect(await stock(order.sku)).toEqual({ on_hand: 10, reserved: 0 });
  });

  test('a cancel delivered with the retry of a lost workflow task undoes the database steps that task committed', async () => {
    // record-order, reserve-inventory and fraud-check run as local activities in one workflow
    // task; the worker dies the moment fraud-check has committed, so that task never completes
    // and the server's history holds none of the three while their rows are in PostgreSQL.
    const queue = uniqueId('rel-lost-task');
    const { url } = await api(queue);
    const dying = spawnNode('test/helpers/scripts/worker-dies-after-step.ts', { ...workerEnv(ctx, queue), DIE_AFTER_STEP: 'checkFraud' }, 'worker ready');
    cleanups.push(async () => {
      if (dying.child.exitCode === null && dying.child.signalCode === null) dying.child.kill('SIGKILL');
    });
    await dying.ready;
    const order = await createOrder(url);
    await dying.exited;
    expect(dying.child.signalCode).toBe('SIGKILL');
    const wf = orderWorkflowId(order.id);
    expect(await ledgerState(`${wf}/${Step.fraudCheck}`)).toBe('completed');
    expect(await stock(order.sku)).toEqual({ on_hand: 10, reserved: 2 });

    // The cancel waits on the server and reaches the saga with the task's retry, before the
    // saga has run any step again: all it knows is that it was started.
    const cancel = post(url, `/orders/${order.id}/cancel`, { reason: 'changed my mind' });
    await new Promise((r) => setTimeout(r, 500));
    await worker(queue);
    expect((await cancel).status).toBe(202);
    const result = await ctx.client.workflow.getHandle(wf).result();
    expect(result.status).toBe('cancelled');
    // Every step the lost task applied is undone; the charge, abandoned, is tombstoned.
    expect(result.compensations.map((c: { step: string; status: string }) => [c.step, c.status])).toEqual([
      [Step.chargePayment, 'done'],
      [Step.fraudCheck, 'done'],
      [Step.reserveInventory, 'done'],
      [Step.recordOrder, 'done'],
    ]);
    expect(await stock(order.sku)).toEqual({ on_hand: 10, reserved: 0 });
    const fraud = await ctx.db.query(`SELECT status FROM fraud_checks WHERE order_id = $1`, [order.id]);
    expect(fraud.rows).toEqual([{ status: 'voided' }]);
    expect(await ledgerState(`${wf}/${Step.chargePayment}`)).toBe('cancelled');
    const books = await reconcileOrder(ctx.db, order.id);
    expect({ status: books.status, problems: books.problems }).toEqual({ status: 'cancelled', problems: [] });
  });

  test('a cancel of an order whose saga was never started starts it, cancels it, and the order ends cancelled', async () => {
    const queue = uniqueId('rel-orphan');
    const { url } = await api(queue);
    await worker(queue);
    const orderId = await abandonedOrder(await body());

    expect((await post(url, `/orders/${orderId}/cancel`)).status).toBe(202);
    const result = await ctx.client.workflow.getHandle(orderWorkflowId(orderId)).result();
    expect(result.status).toBe('cancelled');
    expect(await orderRow(orderId)).toEqual(expect.objectContaining({ status: 'cancelled', saga_started_at: expect.any(Date) }));
    const { rows } = await ctx.db.query(`SELECT count(*)::int AS held FROM reservations WHERE order_id = $1 AND status = 'held'`, [orderId]);
    expect(rows[0].held).toBe(0);
  });

  test('a cancel of a saga that closed without closing its row answers 409 with the reason, never 503', async () => {
    const queue = uniqueId('rel-terminated');
    const { url } = await api(queue);
    await worker(queue);
    await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 5000, path: '/charges' });
    const order = await createOrder(url);
    const handle = ctx.client.workflow.getHandle(orderWorkflowId(order.id));
    await eventually(async () => ((await handle.query(statusQuery)).currentStep === Step.chargePayment ? true : undefined), 'the charge');
    await handle.terminate('operator stopped it');

    for (let i = 0; i < 2; i++) {
      const res = await post(url, `/orders/${order.id}/cancel`);
      expect(expectProblem(res, 409, 'cancel-refused').detail).toContain('terminated');
    }
    const got = await request(url, `/orders/${order.id}`, { apiKey: client.apiKey });
    expect(got.json.saga.status).toBe('terminated');
  });
});

/** An order and its key committed as the API does, by a request that died before starting the saga. */
async function abandonedOrder(b: CreateOrderRequest): Promise<string> {
  const orderId = `ord_dead${randomBytes(6).toString('hex')}`;
  await inTransaction(ctx.db, async (tx) => {
    await tx.query(
      `INSERT INTO idempotency_keys (client_id, key, fingerprint, resource_id, state, locked_until, expires_at)
       VALUES ($1, $2, $3, $4, 'in_flight', now() + interval '10 seconds', now() + interval '1 day')`,
      [client.id, uniqueId('key'), fingerprint(b), orderId],
    );
    await insertOrder(tx, { ...b, orderId }, { clientId: client.id, workflowId: orderWorkflowId(orderId) });
  });
  return orderId;
}

describe('no order is orphaned', () => {
  test('an order whose saga could not be started gets it from the recovery job, though the client never retries', async () => {
    const queue = uniqueId('rel-recover');
    // Temporal refuses the start (no such namespace): the request commits its order, then answers 503.
    const refusing = new Client({ connection: ctx.client.connection, namespace: uniqueId('no-such-namespace') });
    const broken = await api(queue, { temporal: refusing });
    const b = await body();
    const res = await post(broken.url, '/orders', b, uniqueId('key'));
    expectProblem(res, 503, 'unavailable');
    expect(res.headers.get('retry-after')).toBe('1');
    const { rows } = await ctx.db.query<{ id: string }>(
      `SELECT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE i.sku = $1`,
      [b.items[0]!.sku],
    );
    expect(rows).toHaveLength(1);
    const orderId = rows[0]!.id;
    expect((await orderRow(orderId))!.saga_started_at).toBeNull();

    await worker(queue);
    const healthy = await api(queue, { leaseMs: 300, recoveryIntervalMs: 200 });
    const handle = ctx.client.workflow.getHandle(orderWorkflowId(orderId));
    const result = await eventually(() => handle.result().catch(() => undefined), 'the recovered saga to finish', 100, 200);
    expect(result.status).toBe('completed');
    expect(await orderRow(orderId)).toEqual(expect.objectContaining({ status: 'completed', saga_started_at: expect.any(Date) }));
    const metrics = await (await fetch(`${healthy.url}/metrics`)).text();
    expect(metrics).toMatch(/^sagaflow_orders_recovered_total [1-9]/m);
  });

  test('a saga start that fails releases the key at once: the client\'s retry is served, not told to wait out the lease', async () => {
    const queue = uniqueId('rel-lease');
    const refusing = new Client({ connection: ctx.client.connection, namespace: uniqueId('no-such-namespace') });
    // A lease far longer than the test: only its release lets the retry through.
    const broken = await api(queue, { temporal: refusing, leaseMs: 120_000 });
    const b = await body();
    const key = uniqueId('key');
    expectProblem(await post(broken.url, '/orders', b, key), 503, 'unavailable');
    const { rows: keys } = await ctx.db.query<{ released: boolean; state: string }>(
      `SELECT locked_until <= now() AS released, state FROM idempotency_keys WHERE client_id = $1 AND key = $2`,
      [client.id, key],
    );
    expect(keys).toEqual([{ released: true, state: 'in_flight' }]);
    // Retried at once: tried again (and refused again), never 409 "in progress".
    expectProblem(await post(broken.url, '/orders', b, key), 503, 'unavailable');

    await worker(queue);
    const healthy = await api(queue, { leaseMs: 120_000 });
    const res = await post(healthy.url, '/orders', b, key);
    expect(res.status).toBe(201);
    const { rows } = await ctx.db.query<{ id: string }>(
      `SELECT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE i.sku = $1`,
      [b.items[0]!.sku],
    );
    expect(rows.map((r) => r.id)).toEqual([res.json.id]);
  });

  test('an order insert that fails after the key is claimed leaves neither row: the retry creates the order', async () => {
    const queue = uniqueId('rel-atomic');
    const b = await body();
    const fn = uniqueId('refuse_order').replace(/-/g, '_');
    // The order's insert fails inside the request's transaction, after its key was claimed.
    await ctx.db.query(
      `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN IF NEW.customer_id = '${b.customerId}' THEN RAISE EXCEPTION 'order refused for the test'; END IF; RETURN NEW; END $$`,
    );
    await ctx.db.query(`CREATE TRIGGER ${fn} BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION ${fn}()`);
    const key = uniqueId('key');
    const dropTrigger = async () => {
      await ctx.db.query(`DROP TRIGGER IF EXISTS ${fn} ON orders`);
      await ctx.db.query(`DROP FUNCTION IF EXISTS ${fn}()`);
    };
    cleanups.push(dropTrigger);
    const served = await api(queue);
    try {
      expectProblem(await post(served.url, '/orders', b, key), 500, 'internal');
      const keyRows = await ctx.db.query(`SELECT 1 FROM idempotency_keys WHERE client_id = $1 AND key = $2`, [client.id, key]);
      expect(keyRows.rowCount).toBe(0);
      const orders = await ctx.db.query(`SELECT 1 FROM orders WHERE customer_id = $1`, [b.customerId]);
      expect(orders.rowCount).toBe(0);
    } finally {
      await dropTrigger();
    }
    await worker(queue);
    const res = await post(served.url, '/orders', b, key);
    expect(res.status).toBe(201);
    const orders = await ctx.db.query<{ id: string }>(`SELECT id FROM orders WHERE customer_id = $1`, [b.customerId]);
    expect(orders.rows.map((r) => r.id)).toEqual([res.json.id]);
  });

  test('a request still at work (its order younger than the recovery age) is left alone; the same order, older, is recovered', async () => {
    const queue = uniqueId('rel-recover-age');
    const id = await abandonedOrder(await body());
    const recoverer = () => recoverAbandonedOrders({ db: ctx.db, temporal: ctx.client, taskQueue: queue, olderThanMs: 60_000 });
    expect(await recoverer()).not.toContain(id);
    expect((await orderRow(id))!.saga_started_at).toBeNull();
    await expect(ctx.client.workflow.getHandle(orderWorkflowId(id)).describe()).rejects.toThrow(/not found/i);

    await ctx.db.query(`UPDATE orders SET created_at = now() - interval '2 minutes' WHERE id = $1`, [id]);
    expect(await recoverer()).toContain(id);
    expect((await orderRow(id))!.saga_started_at).toEqual(expect.any(Date));
    await ctx.client.workflow.getHandle(orderWorkflowId(id)).terminate('test: recovery checked, no worker on this queue');
  });

  test('an abandoned order locked by another recoverer is skipped, not waited for: the others are recovered meanwhile', async () => {
    const queue = uniqueId('rel-recover-locked');
    const ids = await Promise.all(Array.from({ length: 3 }, async () => abandonedOrder(await body())));
    await ctx.db.query(`UPDATE orders SET created_at = now() - interval '1 minute' WHERE id = ANY($1)`, [ids]);
    const [locked, ...free] = ids as [string, ...string[]];
    const holder = await ctx.db.connect();
    const recoverer = () => recoverAbandonedOrders({ db: ctx.db, temporal: ctx.client, taskQueue: queue, olderThanMs: 10_000 });
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM orders WHERE id = $1 FOR UPDATE`, [locked]);
      const round = recoverer();
      // The round either ends, or waits on the held row lock; waiting is the defect.
      const blocked = async () =>
        (
          await ctx.db.query(
            `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%saga_started_at IS NULL%' AND pid <> pg_backend_pid()`,
          )
        ).rowCount! > 0;
      const outcome = await eventually(
        async () => (await blocked() ? 'blocked' : await Promise.race([round.then(() => 'done'), new Promise((r) => setTimeout(() => r(undefined), 50))])),
        'the recovery round to end or block',
        200,
        0,
      );
      expect(outcome).toBe('done');
      const recovered = await round;
      expect(recovered).not.toContain(locked);
      expect(recovered).toEqual(expect.arrayContaining(free));
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    expect(await recoverer()).toContain(locked);
    for (const id of ids) await ctx.client.workflow.getHandle(orderWorkflowId(id)).terminate('test: recovery checked, no worker on this queue');
  });

  test('recoverers running at once share the abandoned orders: each saga is started once, none is missed', async () => {
    const queue = uniqueId('rel-recover-many');
    const ids = await Promise.all(Array.from({ length: 6 }, async () => abandonedOrder(await body())));
    await ctx.db.query(`UPDATE orders SET created_at = now() - interval '1 minute' WHERE id = ANY($1)`, [ids]);
    const recoverer = () => recoverAbandonedOrders({ db: ctx.db, temporal: ctx.client, taskQueue: queue, olderThanMs: 10_000 });
    const rounds = await Promise.all([recoverer(), recoverer(), recoverer()]);
    const recovered = rounds.flat().filter((id) => ids.includes(id));
    expect(recovered.sort()).toEqual([...ids].sort());
    // A later round finds nothing left to do.
    expect((await recoverer()).filter((id) => ids.includes(id))).toEqual([]);

    await worker(queue);
    const results = await Promise.all(ids.map((id) => ctx.client.workflow.getHandle(orderWorkflowId(id)).result()));
    expect(results.map((r) => r.status)).toEqual(ids.map(() => 'completed'));
    const { rows } = await ctx.db.query<{ status: string }>(`SELECT status FROM orders WHERE id = ANY($1)`, [ids]);
    expect(rows.map((r) => r.status)).toEqual(ids.map(() => 'completed'));
  });
});

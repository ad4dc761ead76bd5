import net from 'node:net';
import { freePort } from '../../src/ports';
import { startOrderSaga } from '../../src/orders/start';
import { reconcileOrder } from '../../dev/services/reconcile';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { addFault, createTestContext, databaseUrl, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { spawnWorker, urlWithSchema, workerEnv, type WorkerProcess } from '../helpers/worker-process';

/**
 * Worker processes die in the middle of sagas: gracefully (SIGTERM) and not
 * (SIGKILL). The sagas must finish on the other workers, and the ledger must
 * show every step applied exactly once.
 */
let ctx: TestContext;
const spawned: WorkerProcess[] = [];

beforeAll(async () => {
  ctx = await createTestContext('chaos');
});
afterEach(async () => {
  for (const w of spawned.splice(0)) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  await fetch(`${ctx.payment.url}/__faults`, { method: 'DELETE' });
});
afterAll(async () => {
  await ctx?.close();
});

function worker(taskQueue: string): WorkerProcess {
  const w = spawnWorker(workerEnv(ctx, taskQueue));
  spawned.push(w);
  return w;
}

async function startSagas(taskQueue: string, n: number) {
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: 100 });
  const orders: OrderInput[] = Array.from({ length: n }, () => ({
    orderId: uniqueId('chaos'),
    customerId: 'c',
    items: [{ sku, quantity: 1 }],
    amount: { amountMinor: 1_000, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'A', line1: 'B', city: 'C', postalCode: 'D', country: 'DE' },
  }));
  const handles = await Promise.all(orders.map((o) => startOrderSaga(ctx.client, o, taskQueue)));
  return { sku, orders, handles };
}

/**
 * Waits until every saga is charging (its payment row written, the provider's call under way), so
 * the victim has payment calls in flight. Read from PostgreSQL: the saga's status query is not
 * answered while its steps run in their workflow task.
 */
async function allCharging(run: Awaited<ReturnType<typeof startSagas>>) {
  for (let i = 0; i < 400; i++) {
    const { rows } = await ctx.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM payments WHERE order_id = ANY($1)`, [run.orders.map((o) => o.orderId)]);
    if (rows[0]!.n === run.orders.length) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('sagas never all reached the charge');
}

async function expectEachStepAppliedOnce(run: Awaited<ReturnType<typeof startSagas>>) {
  const results = await Promise.all(run.handles.map((h) => h.result()));
  expect(results.map((r) => r.status)).toEqual(run.orders.map(() => 'completed'));
  for (const o of run.orders) {
    const books = await reconcileOrder(ctx.db, o.orderId);
    expect(books).toMatchObject({ status: 'completed', netChargedMinor: 1_000, activeShipments: 1, consumedUnits: 1, problems: [] });
    const ledger = await ctx.db.query<{ step: string; state: string }>(
      'SELECT step, state FROM step_ledger WHERE workflow_id = $1 ORDER BY step',
      [`order-${o.orderId}`],
    );
    expect(ledger.rows).toEqual(
      [Step.chargePayment, Step.completeOrder, Step.createShipment, Step.fraudCheck, Step.recordOrder, Step.reserveInventory]
        .sort()
        .map((step) => ({ step, state: 'completed' })),
    );
  }
  const charges = await ctx.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM provider_charges WHERE idempotency_key = ANY($1)`,
    [run.orders.map((o) => `order-${o.orderId}/${Step.chargePayment}`)],
  );
  expect(charges.rows[0]?.n).toBe(run.orders.length);
  const stock = await ctx.db.query('SELECT on_hand, reserved FROM inventory WHERE sku = $1', [run.sku]);
  expect(stock.rows).toEqual([{ on_hand: 100 - run.orders.length, reserved: 0 }]);
}

test('SIGTERM: the worker drains its in-flight steps and exits 0; the sagas finish on the other', async () => {
  const taskQueue = uniqueId('chaos-term');
  const [victim, survivor] = [worker(taskQueue), worker(taskQueue)];
  await Promise.all([victim.ready, survivor.ready]);
  await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 1500, path: '/charges' });
  const run = await startSagas(taskQueue, 6);
  await allCharging(run);

  victim.child.kill('SIGTERM');
  expect(await victim.exited).toBe(0);
  await expectEachStepAppliedOnce(run);
});

test('SIGKILL: the dead worker\'s steps move on after their timeouts; nothing is applied twice', async () => {
  const taskQueue = uniqueId('chaos-kill');
  const [victim, survivor] = [worker(taskQueue), worker(taskQueue)];
  await Promise.all([victim.ready, survivor.ready]);
  await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 1500, path: '/charges' });
  const run = await startSagas(taskQueue, 6);
  await allCharging(run);

  victim.child.kill('SIGKILL');
  expect(await victim.exited).toBeNull();
  await expectEachStepAppliedOnce(run);
});

test('a worker started while Temporal is unreachable waits for it (live, not ready), then serves sagas (ready)', async () => {
  // Temporal is reached through a port that refuses connections until a relay opens on it.
  const port = await freePort();
  const metricsPort = await freePort();
  const probe = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}${path}`);
    return { status: res.status, body: (await res.json()) as unknown };
  };
  const [host, realPort] = process.env.TEMPORAL_ADDRESS!.split(':') as [string, string];
  const taskQueue = uniqueId('late-temporal');
  const w = spawnWorker({
    DATABASE_URL: urlWithSchema(databaseUrl(), ctx.schema),
    TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
    PAYMENT_PROVIDER_URL: ctx.payment.url,
    CARRIER_URL: ctx.carrier.url,
    TEMPORAL_TASK_QUEUE: taskQueue,
    METRICS_PORT: String(metricsPort),
  });
  spawned.push(w);
  await eventuallyTrue(() => w.output().includes(`Temporal at 127.0.0.1:${port} unreachable; waiting for it`), 'the worker to report the refused connection');
  await new Promise((r) => setTimeout(r, 1500));
  expect(w.child.exitCode).toBeNull();
  expect(await probe('/healthz')).toEqual({ status: 200, body: { status: 'ok' } });
  // Not ready, and why: the database answered, Temporal (named, with its address) does not.
  expect(await probe('/readyz')).toEqual({
    status: 503,
    body: { status: 'not ready', checks: { temporal: expect.stringMatching(new RegExp(`^Temporal at 127\\.0\\.0\\.1:${port} unreachable: `)), worker: 'starting' } },
  });

  const relay = net.createServer((inbound) => {
    const outbound = net.connect(Number(realPort), host);
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(port, '127.0.0.1', resolve));
  try {
    await w.ready;
    expect(await probe('/readyz')).toEqual({ status: 200, body: { status: 'ready', checks: { database: 'ok', temporal: 'ok', worker: 'ok' } } });
    const { orders, handles } = await startSagas(taskQueue, 1);
    expect((await handles[0]!.result()).status).toBe('completed');
    expect((await reconcileOrder(ctx.db, orders[0]!.orderId)).problems).toEqual([]);
  } finally {
    w.child.kill('SIGKILL');
    await w.exited;
    relay.close();
  }
});

async function eventuallyTrue(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('SIGTERM while the worker waits for Temporal at start-up: it stops waiting and exits 0 at once, having polled nothing', async () => {
  const port = await freePort(); // nothing listens: Temporal stays unreachable
  const w = spawnWorker({
    DATABASE_URL: urlWithSchema(databaseUrl(), ctx.schema),
    TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
    PAYMENT_PROVIDER_URL: ctx.payment.url,
    CARRIER_URL: ctx.carrier.url,
    TEMPORAL_TASK_QUEUE: uniqueId('term-at-start'),
  });
  spawned.push(w);
  const neverReady = w.ready.then(() => 'ready', () => 'exited before ready');
  // Long enough into the wait that its backoff is seconds, not milliseconds.
  await eventuallyTrue(() => (w.output().match(/Temporal at \S+ unreachable; waiting for it/g) ?? []).length >= 3, 'the worker to be waiting for Temporal');
  const retries = () => (w.output().match(/Temporal at \S+ unreachable; waiting for it/g) ?? []).length;
  const before = retries();
  w.child.kill('SIGTERM');
  expect(await w.exited).toBe(0);
  // The wait ends with the signal, not after another attempt of its backoff.
  expect(retries()).toBe(before);
  expect(w.output()).toContain('signal during start-up: stopped before polling');
  expect(w.output()).not.toContain('worker ready');
  expect(await neverReady).toBe('exited before ready');
});

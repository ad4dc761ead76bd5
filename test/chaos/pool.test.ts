import { startOrderSaga } from '../../src/orders/start';
import { reconcileOrder } from '../../dev/services/reconcile';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { waitFor } from '../../src/ports';
import { addFault, createTestContext, orderInput, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { isRunning, killAll, untilGone } from '../helpers/processes';
import { spawnNode, workerEnv, type NodeProcess } from '../helpers/worker-process';

/**
 * `npm run pool`: the supervisor of worker processes, as operators run it. Real
 * processes on the real server and database: it serves sagas, starts a worker
 * again when one dies, drains them all on SIGTERM, and when the pool itself is
 * SIGKILLed its workers do not run on unsupervised: they drain and exit, and a
 * new pool finishes the sagas with every step applied once.
 */
let ctx: TestContext;
const pools: Pool[] = [];

beforeAll(async () => {
  ctx = await createTestContext('pool');
});
afterEach(async () => {
  for (const p of pools.splice(0)) killAll([p.child.pid!, ...p.workers().map((w) => w.pid)]);
  await fetch(`${ctx.payment.url}/__faults`, { method: 'DELETE' });
});
afterAll(async () => {
  await ctx?.close();
});

interface Pool extends NodeProcess {
  /** Every worker the pool has started, in order: role and pid, and whether it said it is ready. */
  workers(): { role: string; pid: number; ready: boolean }[];
  /** The role's newest worker, once it is ready. */
  readyWorker(role: string): Promise<number>;
}

function pool(taskQueue: string): Pool {
  const p = spawnNode('bin/pool.ts', workerEnv(ctx, taskQueue), '"msg":"pool up"');
  const lines = () =>
    p
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as { msg?: string; role?: string; pid?: number };
        } catch {
          return {};
        }
      });
  const workers = () => {
    const ready = new Set(lines().flatMap((l) => (l.msg === 'worker ready' && l.pid ? [l.pid] : [])));
    return lines().flatMap((l) => (l.msg === 'worker started' && l.role && l.pid ? [{ role: l.role, pid: l.pid, ready: ready.has(l.pid) }] : []));
  };
  const readyWorker = (role: string) =>
    waitFor(`the pool's ${role} worker`, 60_000, async () => {
      const w = workers().filter((x) => x.role === role).at(-1);
      if (!w?.ready) throw new Error('not ready yet');
      return w.pid;
    });
  const result = { ...p, workers, readyWorker };
  pools.push(result);
  return result;
}

const ROLES = ['workflows', 'orders', 'inventory', 'payments', 'shipping'];

async function allReady(p: Pool): Promise<number[]> {
  await p.ready;
  return Promise.all(ROLES.map((r) => p.readyWorker(r)));
}

/** A pool on a queue of its own with every worker ready, and a SKU with 10 in stock. */
async function readyPool(label: string) {
  const taskQueue = uniqueId(label);
  const p = pool(taskQueue);
  const pids = await allReady(p);
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: 10 });
  return { taskQueue, p, pids, sku };
}

function orders(sku: string, n: number): OrderInput[] {
  return Array.from({ length: n }, () => orderInput({ items: [{ sku, quantity: 1 }], amount: { amountMinor: 1_000, currency: 'EUR' } }));
}

/** Each order completed with one charge, one shipment, one unit taken, and no problem in its books. */
async function expectCompletedOnce(list: OrderInput[]) {
  for (const o of list) {
    expect(await reconcileOrder(ctx.db, o.orderId)).toMatchObject({
      status: 'completed',
      netChargedMinor: 1_000,
      activeShipments: 1,
      consumedUnits: 1,
      problems: [],
    });
  }
  const charges = await ctx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM provider_charges WHERE idempotency_key = ANY($1)', [
    list.map((o) => `order-${o.orderId}/${Step.chargePayment}`),
  ]);
  expect(charges.rows[0]?.n).toBe(list.length);
}

test('a pool serves sagas, starts a killed worker again, and on SIGTERM drains every worker and exits 0', async () => {
  const { taskQueue, p, pids: first, sku } = await readyPool('pool');

  const before = orders(sku, 2);
  await Promise.all(before.map(async (o) => (await startOrderSaga(ctx.client, o, taskQueue)).result()));

  // The payments worker dies; the pool starts another, which takes the next charges.
  const victim = first[ROLES.indexOf('payments')]!;
  process.kill(victim, 'SIGKILL');
  const replacement = await waitFor('a new payments worker', 60_000, async () => {
    const pid = await p.readyWorker('payments');
    if (pid === victim) throw new Error('not replaced yet');
    return pid;
  });
  expect(isRunning(victim)).toBe(false);
  const after = orders(sku, 2);
  await Promise.all(after.map(async (o) => (await startOrderSaga(ctx.client, o, taskQueue)).result()));
  await expectCompletedOnce([...before, ...after]);

  p.child.kill('SIGTERM');
  expect(await p.exited).toBe(0);
  const last = [...first.filter((pid) => pid !== victim), replacement];
  expect(last.filter(isRunning)).toEqual([]);
});

test('a pool killed with SIGKILL: its workers drain their in-flight charges and exit, and a new pool finishes the sagas once', async () => {
  const { taskQueue, p, pids: workers, sku } = await readyPool('pool-kill');
  await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 1500, path: '/charges' });
  const list = orders(sku, 3);
  const handles = await Promise.all(list.map((o) => startOrderSaga(ctx.client, o, taskQueue)));
  // Read from PostgreSQL: the status query is not answered while a saga's steps run in their workflow task.
  await waitFor('every saga charging', 30_000, async () => {
    const { rows } = await ctx.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM payments WHERE order_id = ANY($1)`, [list.map((o) => o.orderId)]);
    if (rows[0]!.n !== list.length) throw new Error(`${rows[0]!.n} of ${list.length} charging`);
  });

  p.child.kill('SIGKILL');
  await p.exited;
  // Without the pool nothing would stop them; the kernel's SIGTERM does, and they drain.
  await untilGone(() => workers, 20_000);

  const next = pool(taskQueue);
  await allReady(next);
  await Promise.all(handles.map((h) => h.result()));
  await expectCompletedOnce(list);
  const stock = await ctx.db.query('SELECT on_hand, reserved FROM inventory WHERE sku = $1', [sku]);
  expect(stock.rows).toEqual([{ on_hand: 10 - list.length, reserved: 0 }]);
});

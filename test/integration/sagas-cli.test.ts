/**
 * `sagaflow sagas list` and `sagaflow sagas show`: real sagas on the real Temporal server (one
 * completes after a carrier error, one compensates after a declined card, one was never started),
 * read through src/operator directly, then through the command as a process. Every answer is
 * checked against the rows in PostgreSQL.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { createApiClient } from '../../src/api/auth';
import { inTransaction } from '../../src/db/pool';
import { insertOrder, markSagaStarted } from '../../src/orders/repository';
import { startOrderSaga } from '../../src/orders/start';
import { InvalidCursor } from '../../src/orders/list';
import { listSagas, OperatorError, showSaga, type OperatorDeps, type SagaSummary } from '../../src/operator/sagas';
import { createSagaWorker } from '../../workers/worker';
import { orderWorkflowId } from '../../workflows/order/ids';
import type { OrderInput } from '../../workflows/order/types';
import { eventually } from '../helpers/api';
import { addFault, createTestContext, databaseUrl, orderInput, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { urlWithSchema } from '../helpers/worker-process';

const ROOT = path.resolve(__dirname, '../..');
const UI = 'http://temporal-ui.test:8080/';

let ctx: TestContext;
let deps: OperatorDeps;
const taskQueue = uniqueId('sagas-cli');
let shop: { id: string; name: string };
let other: { id: string; name: string };
/** The shop's orders: completed after one carrier error, compensated after a declined card, never started. */
let shipped: OrderInput;
let declined: OrderInput;
let notStarted: OrderInput;
let othersOrder: OrderInput;

/** An order of a client's, written as the API writes it; its saga started unless `start` is false. */
async function place(clientId: string, overrides: Partial<OrderInput>, start = true): Promise<OrderInput> {
  const o = orderInput({ orderId: `ord_${uniqueId('s').slice(2)}`, ...overrides });
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 10 });
  await inTransaction(ctx.db, (tx) => insertOrder(tx, o, { clientId, workflowId: orderWorkflowId(o.orderId) }));
  if (start) {
    await startOrderSaga(ctx.client, o, taskQueue);
    await markSagaStarted(ctx.db, o.orderId);
  }
  return o;
}

async function clientOrderIds(clientId: string, where = 'true', params: unknown[] = []): Promise<string[]> {
  const res = await ctx.db.query<{ id: string }>(`SELECT id FROM orders WHERE client_id = $1 AND (${where}) ORDER BY created_at DESC, id DESC`, [
    clientId,
    ...params,
  ]);
  return res.rows.map((r) => r.id);
}

beforeAll(async () => {
  ctx = await createTestContext('sagas');
  const worker = await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps });
  ctx.startWorker(worker);
  deps = { db: ctx.db, temporal: ctx.client, namespace: ctx.namespace, temporalUiUrl: UI };
  shop = await createApiClient(ctx.db, uniqueId('shop'));
  other = await createApiClient(ctx.db, uniqueId('other'));
  notStarted = await place(shop.id, {}, false);
  const shippedId = `ord_${uniqueId('s').slice(2)}`;
  await addFault(ctx.carrier.url, { kind: 'error', path: '/shipments', keyPrefix: `order-${shippedId}/`, times: 1 });
  shipped = await place(shop.id, { orderId: shippedId });
  declined = await place(shop.id, { paymentToken: 'tok_decline' });
  othersOrder = await place(other.id, {});
  await Promise.all([shipped, declined, othersOrder].map((o) => ctx.client.workflow.getHandle(orderWorkflowId(o.orderId)).result()));
  // Visibility follows the sagas by a moment: wait until it says how each ended.
  await eventually(async () => {
    const { sagas } = await listSagas(deps, { client: shop.name }, { limit: 10 });
    const status = (o: OrderInput) => sagas.find((s) => s.orderId === o.orderId)?.sagaStatus;
    return status(shipped) === 'completed' && status(declined) === 'compensated' ? true : undefined;
  }, 'visibility to show the sagas ended');
}, 60_000);

afterAll(async () => {
  await ctx?.close();
});

describe('listSagas', () => {
  test("one client's sagas, newest first, with the order's status from its row and the saga's from Temporal", async () => {
    const { sagas, nextCursor } = await listSagas(deps, { client: shop.id }, { limit: 20 });
    expect(nextCursor).toBeNull();
    expect(sagas.map((s) => s.orderId)).toEqual(await clientOrderIds(shop.id));
    const rows = await ctx.db.query<{ id: string; status: string; workflow_id: string }>('SELECT id, status, workflow_id FROM orders WHERE client_id = $1', [shop.id]);
    const expected = Object.fromEntries(rows.rows.map((r) => [r.id, { orderStatus: r.status, workflowId: r.workflow_id }]));
    for (const s of sagas) expect(s).toMatchObject({ ...expected[s.orderId], client: { id: shop.id, name: shop.name }, currentStep: null });
    const bySaga = Object.fromEntries(sagas.map((s) => [s.orderId, [s.orderStatus, s.sagaStatus]]));
    expect(bySaga).toEqual({
      [shipped.orderId]: ['completed', 'completed'],
      [declined.orderId]: ['failed', 'compensated'],
      [notStarted.orderId]: ['pending', 'not_started'],
    });
    // The same client named by its name; the other client's order is not among them.
    expect((await listSagas(deps, { client: shop.name }, { limit: 20 })).sagas).toEqual(sagas.map((s) => ({ ...s, ageMs: expect.any(Number) })));
    expect(sagas.map((s) => s.orderId)).not.toContain(othersOrder.orderId);
  });

  test('--status from PostgreSQL, --saga-status from Temporal, --older-than from created_at', async () => {
    const ids = async (filter: Parameters<typeof listSagas>[1]) => (await listSagas(deps, { client: shop.id, ...filter }, { limit: 20 })).sagas.map((s) => s.orderId);
    expect(await ids({ status: 'failed' })).toEqual(await clientOrderIds(shop.id, "status = 'failed'"));
    expect(await ids({ status: 'failed' })).toEqual([declined.orderId]);
    expect(await ids({ sagaStatus: 'compensated' })).toEqual([declined.orderId]);
    expect(await ids({ sagaStatus: 'not_started' })).toEqual([notStarted.orderId]);
    expect(await ids({ sagaStatus: 'running' })).toEqual([]);
    await ctx.db.query(`UPDATE orders SET created_at = now() - interval '2 hours' WHERE id = $1`, [notStarted.orderId]);
    expect(await ids({ olderThanMs: 3_600_000 })).toEqual(await clientOrderIds(shop.id, "created_at < now() - interval '1 hour'"));
    expect(await ids({ olderThanMs: 3_600_000 })).toEqual([notStarted.orderId]);
    const [old] = (await listSagas(deps, { client: shop.id, olderThanMs: 3_600_000 }, { limit: 1 })).sagas as [SagaSummary];
    expect(old.ageMs).toBeGreaterThanOrEqual(7_200_000);
    // Every client's, without --client.
    const all = (await listSagas(deps, {}, { limit: 100 })).sagas.map((s) => s.orderId);
    expect(all).toEqual(expect.arrayContaining([shipped.orderId, declined.orderId, notStarted.orderId, othersOrder.orderId]));
  });

  test('pages of one walk every saga once, with or without a Temporal filter', async () => {
    const walk = async (filter: Parameters<typeof listSagas>[1]) => {
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let i = 0; i < 20; i++) {
        const page = await listSagas(deps, filter, { limit: 1, cursor });
        seen.push(...page.sagas.map((s) => s.orderId));
        if (!page.nextCursor) return seen;
        cursor = page.nextCursor;
      }
      throw new Error('no last page');
    };
    expect(await walk({ client: shop.id })).toEqual(await clientOrderIds(shop.id));
    expect(await walk({ client: shop.id, sagaStatus: 'completed' })).toEqual([shipped.orderId]);
  });

  test('an unknown client and a cursor altered or from other filters are refused, naming why', async () => {
    await expect(listSagas(deps, { client: 'nobody-by-that-name' }, { limit: 5 })).rejects.toThrow(OperatorError);
    const { nextCursor } = await listSagas(deps, { client: shop.id }, { limit: 1 });
    await expect(listSagas(deps, { client: shop.id, status: 'failed' }, { limit: 1, cursor: nextCursor! })).rejects.toThrow(InvalidCursor);
    await expect(listSagas(deps, { client: shop.id }, { limit: 1, cursor: `${nextCursor!.slice(0, -2)}xx` })).rejects.toThrow(InvalidCursor);
  });
});

describe('showSaga', () => {
  test('a compensated saga: its order, compensations, failed charge, ledger rows and references as the tables hold them', async () => {
    const d = (await showSaga(deps, declined.orderId))!;
    const wf = orderWorkflowId(declined.orderId);
    expect(d.order).toMatchObject({ id: declined.orderId, status: 'failed', client_id: shop.id, client_name: shop.name });
    expect(d.temporalUi).toBe(`http://temporal-ui.test:8080/namespaces/${ctx.namespace}/workflows/${wf}`);
    expect(d.saga.status).toBe('compensated');
    expect(d.saga.execution).toMatchObject({ status: 'completed', taskQueue });
    expect(d.saga.live).toMatchObject({ phase: 'compensated', failure: { type: 'PaymentDeclined' } });
    // Each step done before the charge is undone once, and the charge's own undo ran too.
    const tombstones = await ctx.db.query<{ step: string }>(`SELECT step FROM step_ledger WHERE workflow_id = $1 AND state = 'cancelled'`, [wf]);
    expect(d.saga.live!.compensations.map((c) => c.step).sort()).toEqual(tombstones.rows.map((r) => r.step).sort());
    expect(d.saga.live!.compensations.every((c) => c.status === 'done' && c.attempts === 1)).toBe(true);
    const charge = d.activities.find((a) => a.activity === 'chargePayment')!;
    expect(charge).toMatchObject({ outcome: 'failed', attempts: 1, lastError: expect.stringMatching(/declin/i) });
    const ledger = await ctx.db.query<{ key: string; state: string }>('SELECT key, state FROM step_ledger WHERE workflow_id = $1 ORDER BY key', [wf]);
    expect(d.ledger.map((l) => ({ key: l.key, state: l.state })).sort((a, b) => (a.key < b.key ? -1 : 1))).toEqual(ledger.rows);
    const payments = await ctx.db.query('SELECT idempotency_key, status, provider_charge_id FROM payments WHERE order_id = $1', [declined.orderId]);
    expect(d.references.payments.map((p) => ({ idempotency_key: p.idempotencyKey, status: p.status, provider_charge_id: p.providerChargeId }))).toEqual(payments.rows);
    const reservations = await ctx.db.query('SELECT sku, status FROM reservations WHERE order_id = $1', [declined.orderId]);
    expect(d.references.reservations.map((r) => ({ sku: r.sku, status: r.status }))).toEqual(reservations.rows);
    expect(d.references.shipments).toEqual([]);
  });

  test("a saga that completed after a carrier error: the shipment's two attempts and the carrier's references", async () => {
    const d = (await showSaga(deps, shipped.orderId))!;
    expect(d.saga).toMatchObject({ status: 'completed', live: { phase: 'completed', compensations: [] } });
    const shipment = d.activities.find((a) => a.activity === 'createShipment')!;
    // A local activity's marker holds its last attempt: the first one's error stayed in the worker, which retried it.
    expect(shipment).toMatchObject({ outcome: 'completed', attempts: 2, lastError: null });
    const row = await ctx.db.query('SELECT carrier_shipment_id, tracking_number, status FROM shipments WHERE order_id = $1', [shipped.orderId]);
    expect(row.rows).toHaveLength(1);
    expect(row.rows[0].carrier_shipment_id).toEqual(expect.any(String));
    expect(d.references.shipments.map((s) => ({ carrier_shipment_id: s.carrierShipmentId, tracking_number: s.trackingNumber, status: s.status }))).toEqual(row.rows);
    const charge = await ctx.db.query('SELECT provider_charge_id FROM payments WHERE order_id = $1', [shipped.orderId]);
    expect(d.references.payments.map((p) => p.providerChargeId)).toEqual([charge.rows[0].provider_charge_id]);
    expect(charge.rows[0].provider_charge_id).toEqual(expect.any(String));
  });

  test('an order whose saga never started, and one that does not exist', async () => {
    const d = (await showSaga(deps, notStarted.orderId))!;
    expect(d.saga).toEqual({ status: 'not_started', liveUnavailable: 'the saga was never started' });
    expect(d.activities).toEqual([]);
    expect(d.ledger).toEqual([]);
    expect(await showSaga(deps, 'ord_nothing_here')).toBeUndefined();
    expect(await showSaga(deps, "ord'; --")).toBeUndefined();
  });
});

describe('the command', () => {
  const env = () => ({
    ...process.env,
    DATABASE_URL: urlWithSchema(databaseUrl(), ctx.schema),
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS!,
    TEMPORAL_NAMESPACE: ctx.namespace,
    TEMPORAL_UI_URL: UI,
  });
  const run = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/sagas.ts', ...args], { cwd: ROOT, env: env(), timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );

  test('list prints a line per saga, show --json the saga, an unknown order one line and exit 1, a bad flag exit 2', async () => {
    const [list, show, unknown, bad] = await Promise.all([
      run(['list', '--client', shop.name, '--limit', '2']),
      run(['show', declined.orderId, '--json']),
      run(['show', 'ord_nothing_here']),
      run(['list', '--saga-status', 'stuck']),
    ]);
    expect(list.code).toBe(0);
    const lines = list.stdout.trim().split('\n').map((l) => l.split('\t'));
    const expected = (await clientOrderIds(shop.id)).slice(0, 2);
    expect(lines.map((l) => l[0])).toEqual(expected);
    for (const l of lines) expect(l[1]).toBe(orderWorkflowId(l[0]!));
    expect(list.stderr).toMatch(/^more: --cursor [A-Za-z0-9_-]+\n$/);

    expect(show.code).toBe(0);
    const detail = JSON.parse(show.stdout);
    expect(detail.saga.status).toBe('compensated');
    const ledger = await ctx.db.query<{ key: string }>('SELECT key FROM step_ledger WHERE workflow_id = $1 ORDER BY key', [orderWorkflowId(declined.orderId)]);
    expect(detail.ledger.map((l: { key: string }) => l.key).sort()).toEqual(ledger.rows.map((r) => r.key));
    expect(detail.temporalUi).toBe(`http://temporal-ui.test:8080/namespaces/${ctx.namespace}/workflows/${orderWorkflowId(declined.orderId)}`);

    expect(unknown).toEqual({ code: 1, stdout: '', stderr: 'no order "ord_nothing_here"\n' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^--saga-status: one of .*, not "stuck"\n\nusage: npm run sagas/);
  }, 90_000);
});

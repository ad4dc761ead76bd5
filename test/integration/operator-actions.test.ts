/**
 * Operators' actions on sagas (src/operator/actions.ts), through the functions, the admin API and
 * the `sagaflow sagas` command, on real sagas on the real Temporal server: admin keys and scopes,
 * bulk cancel (dry run and for real) of sagas kept in flight by a slow provider, terminate (refused
 * without confirmation), resolve of a closed saga whose refund failed for good, and the refusals of
 * retry-compensation. Every answer is checked against the rows in PostgreSQL (operator_actions,
 * orders, order_events) and against Temporal's description of the runs.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { createApiClient } from '../../src/api/auth';
import { startApi, type RunningApi } from '../../src/api/server';
import { inTransaction } from '../../src/db/pool';
import { insertOrder, markSagaStarted } from '../../src/orders/repository';
import { startOrderSaga } from '../../src/orders/start';
import { ORDER_SAGA_V1_WORKFLOW_TYPE } from '../../workflows/order/definitions';
import { cancelSagas, retryCompensation, terminateSagas } from '../../src/operator/actions';
import { OperatorError } from '../../src/operator/sagas';
import { createSagaWorker } from '../../workers/worker';
import { orderWorkflowId } from '../../workflows/order/ids';
import { statusQuery } from '../../workflows/order/definitions';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { eventually, expectProblem, request } from '../helpers/api';
import { addFault, createTestContext, databaseUrl, orderInput, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { urlWithSchema } from '../helpers/worker-process';

const ROOT = path.resolve(__dirname, '../..');

let ctx: TestContext;
let api: RunningApi;
const taskQueue = uniqueId('operator');
let shop: { id: string; name: string; apiKey: string };
let ops: { id: string; name: string; apiKey: string };

interface ActionRow {
  actor: string;
  action: string;
  order_id: string | null;
  workflow_id: string | null;
  selection: Record<string, unknown> | null;
  dry_run: boolean;
  note: string | null;
  outcome: Record<string, any> | null;
  finished_at: Date | null;
}

/** An order of the shop's, written as the API writes it, its saga started. */
async function place(overrides: Partial<OrderInput> = {}, workflowType?: string): Promise<OrderInput> {
  const o = orderInput({ orderId: `ord_${uniqueId('p').slice(2)}`, ...overrides });
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 10 });
  await inTransaction(ctx.db, (tx) => insertOrder(tx, o, { clientId: shop.id, workflowId: orderWorkflowId(o.orderId) }));
  await startOrderSaga(ctx.client, o, taskQueue, { workflowType });
  await markSagaStarted(ctx.db, o.orderId);
  return o;
}

/**
 * A saga kept in flight: its charge answers after `ms` (under the activity's 15 s start-to-close
 * timeout). An orderSaga, the first type: its charge runs on the payments queue, so its status
 * answers and a cancel reaches it while the charge is under way (an orderSagaV2 sees them when its
 * one workflow task ends).
 */
async function slow(ms: number): Promise<OrderInput> {
  const orderId = `ord_${uniqueId('p').slice(2)}`;
  await addFault(ctx.payment.url, { kind: 'latency', latency_ms: ms, path: '/charges', keyPrefix: `${orderWorkflowId(orderId)}/`, times: 1 });
  const o = await place({ orderId }, ORDER_SAGA_V1_WORKFLOW_TYPE);
  await eventually(async () => {
    const s = await ctx.client.workflow.getHandle(orderWorkflowId(orderId)).query(statusQuery).catch(() => undefined);
    return s?.currentStep === Step.chargePayment ? true : undefined;
  }, `the saga of ${orderId} to be charging`);
  return o;
}

const actionRows = async (where: string, params: unknown[]) =>
  (await ctx.db.query<ActionRow>(`SELECT actor, action, order_id, workflow_id, selection, dry_run, note, outcome, finished_at FROM operator_actions WHERE ${where} ORDER BY id`, params)).rows;

const executionStatus = async (o: OrderInput) => (await ctx.client.workflow.getHandle(orderWorkflowId(o.orderId)).describe()).status.name;

const admin = (p: string, body?: unknown, apiKey = ops.apiKey) => request(api.url, p, { apiKey, body });

function sagasCommand(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    DATABASE_URL: urlWithSchema(databaseUrl(), ctx.schema),
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS!,
    TEMPORAL_NAMESPACE: ctx.namespace,
  };
  return new Promise((resolve) =>
    execFile(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/sagas.ts', ...args], { cwd: ROOT, env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

beforeAll(async () => {
  ctx = await createTestContext('operator');
  // The provider's answer may take longer than the test stack's 3 s: the slow charges below stay in flight
  // for as long as they are slow, not until a client timeout ends them and a quick retry goes through.
  const worker = await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: { ...ctx.deps, providerTimeoutMs: 20_000 } });
  ctx.startWorker(worker);
  api = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue, log: () => undefined });
  shop = await createApiClient(ctx.db, uniqueId('shop'));
  ops = await createApiClient(ctx.db, uniqueId('ops'), { scope: 'admin' });
}, 60_000);

afterEach(async () => {
  await fetch(`${ctx.payment.url}/__faults`, { method: 'DELETE' });
  await fetch(`${ctx.carrier.url}/__faults`, { method: 'DELETE' });
});

afterAll(async () => {
  await api?.close();
  await ctx?.close();
});

test('admin keys reach /admin only, ordinary keys everything but /admin; each refusal names the scope needed', async () => {
  expect((await ctx.db.query('SELECT id, scope FROM api_clients WHERE id = ANY($1) ORDER BY id', [[shop.id, ops.id]])).rows).toEqual(
    [
      { id: shop.id, scope: 'orders' },
      { id: ops.id, scope: 'admin' },
    ].sort((a, b) => (a.id < b.id ? -1 : 1)),
  );
  expectProblem(await request(api.url, '/admin/sagas'), 401, 'unauthorized');
  const ordinary = expectProblem(await request(api.url, '/admin/sagas', { apiKey: shop.apiKey }), 403, 'forbidden');
  expect(ordinary.detail).toMatch(/scope admin/);
  const asAdmin = expectProblem(await request(api.url, '/orders', { apiKey: ops.apiKey }), 403, 'forbidden');
  expect(asAdmin.detail).toMatch(/scope orders/);
  expectProblem(await request(api.url, '/admin/sagas/cancel', { apiKey: shop.apiKey, body: { query: "SagaStatus = 'running'", dry_run: true } }), 403, 'forbidden');
  const list = await request(api.url, `/admin/sagas?client=${shop.id}&limit=5`, { apiKey: ops.apiKey });
  expect(list.status).toBe(200);
  expect(Object.keys(list.json).sort()).toEqual(['next_cursor', 'sagas']);
  const orders = await ctx.db.query<{ id: string }>('SELECT id FROM orders WHERE client_id = $1 ORDER BY created_at DESC, id DESC LIMIT 5', [shop.id]);
  expect(list.json.sagas.map((s: { orderId: string }) => s.orderId)).toEqual(orders.rows.map((r) => r.id));
  // A refused request wrote nothing.
  expect(await actionRows('true', [])).toEqual([]);
});

test('bulk cancel: a dry run lists the open sagas and touches none; then each accepts its cancel and unwinds', async () => {
  const running = [await slow(12_000), await slow(12_000)];
  const done = await place();
  await ctx.client.workflow.getHandle(orderWorkflowId(done.orderId)).result();
  const selection = { filters: { client: shop.name, status: 'pending' as const } };
  const ids = running.map((o) => o.orderId).sort();

  const dry = await eventually(async () => {
    const r = await cancelSagas({ client: ctx.client, db: ctx.db, by: 'cli:ada', selection, dryRun: true, reason: 'test dry run' });
    return r.selected.map((s) => s.orderId).sort().join() === ids.join() ? r : undefined;
  }, 'visibility to show both sagas open', 100, 100);
  expect(dry).toMatchObject({ action: 'cancel', dryRun: true, more: false, results: [] });
  for (const o of running) expect(await executionStatus(o)).toBe('RUNNING');
  const dryRows = await actionRows('action = $1', ['cancel']);
  expect(dryRows.length).toBeGreaterThanOrEqual(1);
  const lastDry = dryRows[dryRows.length - 1]!;
  expect(dryRows.every((r) => r.dry_run && r.order_id === null)).toBe(true);
  expect(lastDry).toMatchObject({ actor: 'cli:ada', dry_run: true, note: 'test dry run', selection: { filters: selection.filters, limit: 500 } });
  expect(lastDry.outcome).toEqual({ ok: true, more: false, wouldTouch: expect.arrayContaining(running.map((o) => ({ orderId: o.orderId, workflowId: orderWorkflowId(o.orderId) }))) });
  expect(lastDry.finished_at).toBeInstanceOf(Date);

  const real = await cancelSagas({ client: ctx.client, db: ctx.db, by: 'cli:ada', selection, reason: 'customer asked' });
  expect(real.results.map((r) => [r.orderId, r.outcome]).sort()).toEqual(ids.map((id) => [id, 'accepted']));
  for (const o of running) {
    await expect(ctx.client.workflow.getHandle(orderWorkflowId(o.orderId)).result()).resolves.toMatchObject({ status: 'cancelled' });
  }
  const orders = await ctx.db.query('SELECT id, status FROM orders WHERE id = ANY($1) ORDER BY id', [[...ids, done.orderId]]);
  expect(orders.rows).toEqual([...ids.map((id) => ({ id, status: 'cancelled' })), { id: done.orderId, status: 'completed' }].sort((a, b) => (a.id < b.id ? -1 : 1)));
  const rows = await actionRows('action = $1 AND NOT dry_run', ['cancel']);
  expect(rows.map((r) => r.order_id).sort()).toEqual(ids);
  for (const r of rows) {
    expect(r).toMatchObject({ actor: 'cli:ada', workflow_id: orderWorkflowId(r.order_id!), note: 'customer asked', outcome: { ok: true, outcome: 'accepted' } });
    expect(r.finished_at).toBeInstanceOf(Date);
  }
}, 30_000);

test('terminate: refused without confirmation, touching nothing; confirmed, the saga is terminated and the action recorded', async () => {
  const o = await slow(12_000);
  const query = `OrderId = '${o.orderId}'`;
  const before = (await actionRows('action = $1', ['terminate'])).length;
  await expect(terminateSagas({ client: ctx.client, db: ctx.db, by: 'cli:ada', selection: { query } })).rejects.toThrow(OperatorError);
  const refused = expectProblem(await admin('/admin/sagas/terminate', { query }), 400, 'invalid-request');
  expect(refused.detail).toMatch(/no compensation/);
  expect(await executionStatus(o)).toBe('RUNNING');
  expect(await actionRows('action = $1', ['terminate'])).toHaveLength(before);

  const res = await eventually(async () => {
    const r = await admin('/admin/sagas/terminate', { query, confirm: true, reason: 'stuck, ticket 9' });
    expect(r.status).toBe(200);
    return r.json.selected.length ? r : undefined;
  }, 'visibility to show the saga open', 100, 100);
  expect(res.json).toMatchObject({ action: 'terminate', dryRun: false, more: false, results: [{ orderId: o.orderId, workflowId: orderWorkflowId(o.orderId), outcome: 'terminated' }] });
  expect(await executionStatus(o)).toBe('TERMINATED');
  const rows = await actionRows('action = $1 AND order_id = $2', ['terminate', o.orderId]);
  expect(rows).toEqual([
    expect.objectContaining({ actor: `admin:${ops.name}`, dry_run: false, note: 'stuck, ticket 9', selection: { query, limit: 500 }, outcome: { ok: true, outcome: 'terminated' } }),
  ]);
}, 30_000);

test('resolve of a closed saga whose refund failed for good: the resolution on the order, its compensation_resolved event, the action', async () => {
  const o = orderInput({ orderId: `ord_${uniqueId('p').slice(2)}` });
  const wf = orderWorkflowId(o.orderId);
  await addFault(ctx.carrier.url, { kind: 'error', status: 400, path: '/shipments', keyPrefix: `${wf}/create-shipment`, times: 1 });
  await addFault(ctx.payment.url, { kind: 'error', status: 400, path: '/refunds', keyPrefix: `${wf}/charge-payment/undo` });
  await place(o);
  const handle = ctx.client.workflow.getHandle(wf);
  // The saga either closes failed (CompensationFailed) or, holding for an operator, stays open: then it is terminated.
  await eventually(async () => {
    const described = await handle.describe();
    if (described.status.name !== 'RUNNING') return true;
    const s = await handle.query(statusQuery).catch(() => undefined);
    return (s as { awaitingOperator?: boolean } | undefined)?.awaitingOperator === true ? true : undefined;
  }, 'the saga to fail or hold', 200, 100);
  if ((await handle.describe()).status.name === 'RUNNING') await handle.terminate('closing a held saga for the test');
  const unresolved = await ctx.db.query<{ compensation_failures: { step: string; resolution?: unknown }[] }>('SELECT compensation_failures FROM orders WHERE id = $1', [o.orderId]);
  expect(unresolved.rows[0]!.compensation_failures).toEqual([expect.objectContaining({ step: Step.chargePayment })]);
  expect(unresolved.rows[0]!.compensation_failures[0]!.resolution).toBeUndefined();

  // retry-compensation cannot rerun the compensations of a closed saga: it says to resolve it.
  await expect(retryCompensation({ client: ctx.client, db: ctx.db, orderId: o.orderId, by: 'cli:ada' })).rejects.toThrow(/closed \((failed|terminated)\) before it could be held.*sagas resolve/);

  const [noNote, resolved] = await Promise.all([
    sagasCommand(['resolve', o.orderId]),
    sagasCommand(['resolve', o.orderId, '--note', 'refunded by hand, ticket 7', '--by', 'cli:grace']),
  ]);
  expect(noNote.code).toBe(2);
  expect(noNote.stderr).toMatch(/^resolve needs --note/);
  expect(resolved).toMatchObject({ code: 0, stderr: '' });
  expect(resolved.stdout).toBe(`order ${o.orderId}: resolved by hand: ${Step.chargePayment}\n`);

  const after = await ctx.db.query<{ compensation_failures: Record<string, any>[] }>('SELECT compensation_failures FROM orders WHERE id = $1', [o.orderId]);
  const entry = after.rows[0]!.compensation_failures[0]!;
  expect(entry.resolution).toEqual({ how: 'manual', by: 'cli:grace', note: 'refunded by hand, ticket 7', at: expect.any(String) });
  const events = await ctx.db.query<{ type: string; data: Record<string, any> }>(`SELECT type, data FROM order_events WHERE order_id = $1 AND type = 'compensation_resolved'`, [o.orderId]);
  expect(events.rows).toEqual([{ type: 'compensation_resolved', data: expect.objectContaining({ compensationResolution: entry }) }]);
  const rows = await actionRows('order_id = $1', [o.orderId]);
  expect(rows.map((r) => [r.action, r.actor, r.outcome?.ok])).toEqual([
    ['retry-compensation', 'cli:ada', false],
    ['resolve', 'cli:grace', true],
  ]);
  expect(rows[1]).toMatchObject({ workflow_id: wf, note: 'refunded by hand, ticket 7', outcome: { steps: [Step.chargePayment], via: 'database' } });

  // Nothing is left to resolve: refused, in one line, and through the admin API as a 409.
  const again = await sagasCommand(['resolve', o.orderId, '--note', 'again']);
  expect(again).toMatchObject({ code: 1, stdout: '' });
  expect(again.stderr).toMatch(/^order \S+ has no unresolved compensation failure: nothing to resolve.*\n$/);
  expectProblem(await admin(`/admin/sagas/${o.orderId}/resolve`, { note: 'again' }), 409, 'action-refused');
  expectProblem(await admin(`/admin/sagas/${o.orderId}/resolve`, {}), 400, 'invalid-request');
  expect((await ctx.db.query(`SELECT count(*)::int AS n FROM order_events WHERE order_id = $1 AND type = 'compensation_resolved'`, [o.orderId])).rows).toEqual([{ n: 1 }]);
}, 30_000);

test('retry-compensation is refused for an unknown order and for a completed saga, the latter recorded', async () => {
  const o = await place();
  await ctx.client.workflow.getHandle(orderWorkflowId(o.orderId)).result();
  await expect(retryCompensation({ client: ctx.client, db: ctx.db, orderId: 'ord_nothing_here', by: 'cli:ada' })).rejects.toThrow('no order "ord_nothing_here"');
  expectProblem(await admin('/admin/sagas/ord_nothing_here/retry-compensation', {}), 404, 'not-found');
  const refused = expectProblem(await admin(`/admin/sagas/${o.orderId}/retry-compensation`, { note: 'try' }), 409, 'action-refused');
  expect(refused.detail).toBe(`the saga of order ${o.orderId} closed (completed) with no compensation failing: there is nothing to retry`);
  const cli = await sagasCommand(['retry-compensation', o.orderId]);
  expect(cli).toEqual({ code: 1, stdout: '', stderr: `${refused.detail}\n` });
  expect(await actionRows('order_id = ANY($1)', [[o.orderId, 'ord_nothing_here']])).toEqual([
    expect.objectContaining({ action: 'retry-compensation', actor: `admin:${ops.name}`, note: 'try', outcome: { ok: false, error: refused.detail } }),
    expect.objectContaining({ action: 'retry-compensation', actor: expect.stringMatching(/^cli:/), outcome: { ok: false, error: refused.detail } }),
  ]);
  // The saga is as it was.
  expect(await executionStatus(o)).toBe('COMPLETED');
}, 30_000);

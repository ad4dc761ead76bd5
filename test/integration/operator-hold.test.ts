/**
 * The order saga held for an operator (holdForOperator) on the real server, worker, provider and
 * carrier: a refund the provider refuses for good holds the saga with its order closed failed; an
 * operator's retry once the cause is fixed refunds exactly once (under a key of its own, since a
 * provider may answer a refused key with its refusal) and the books audit clean; a manual
 * resolution records who and why, and the audit then accounts for the charge left standing. Each
 * through the operators' verbs (src/operator/actions.ts: `sagaflow sagas`, /admin), which write
 * every action in operator_actions.
 */
import { startOrderSaga } from '../../src/orders/start';
import { resolve, retryCompensation } from '../../src/operator/actions';
import { auditBooks } from '../../src/orders/audit';
import { reconcileSimulatedServices } from '../../dev/services/reconcile';
import { createSagaWorker } from '../../workers/worker';
import { statusQuery } from '../../workflows/order/definitions';
import { orderWorkflowId } from '../../workflows/order/ids';
import type { OrderInput } from '../../workflows/order/types';
import { addFault, createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;
const taskQueue = uniqueId('operator-hold');

beforeAll(async () => {
  ctx = await createTestContext('operator_hold');
  ctx.startWorker(await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps }));
});

afterAll(async () => {
  await ctx?.close();
});

function order(): OrderInput {
  const id = uniqueId('held');
  return {
    orderId: id,
    customerId: 'c-held',
    items: [{ sku: `sku-${id}`, quantity: 1 }],
    amount: { amountMinor: 4_200, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  };
}

/** A saga whose shipment is refused for good, then whose refund the provider refuses `refusals` times (400). */
async function heldSaga(refusals: number) {
  const o = order();
  const wf = orderWorkflowId(o.orderId);
  await seedInventory(ctx.db, { [o.items[0]!.sku]: 5 });
  await addFault(ctx.carrier.url, { kind: 'error', status: 400, path: '/shipments', keyPrefix: `${wf}/create-shipment`, times: 1 });
  await addFault(ctx.payment.url, { kind: 'error', status: 400, path: '/refunds', keyPrefix: `${wf}/charge-payment/undo`, times: refusals });
  const handle = await startOrderSaga(ctx.client, o, taskQueue);
  for (let i = 0; i < 300 && (await handle.query(statusQuery)).awaitingOperator !== true; i++) await new Promise((r) => setTimeout(r, 100));
  expect(await handle.query(statusQuery)).toMatchObject({ phase: 'failed', awaitingOperator: true });
  return { o, wf, handle };
}

const q = async <T extends Record<string, unknown>>(sql: string, params: unknown[]): Promise<T[]> => (await ctx.db.query<T>(sql, params)).rows;
const events = (orderId: string) => q<{ type: string }>('SELECT type FROM order_events WHERE order_id = $1 ORDER BY position', [orderId]).then((r) => r.map((e) => e.type));
const audit = (orderId: string) => auditBooks(ctx.db, { orderIds: [orderId], settled: true, checks: [reconcileSimulatedServices] });

test('held with its order closed failed; a retry while the provider still refuses fails again; once fixed, a retry refunds once and the books audit clean', async () => {
  const { o, wf, handle } = await heldSaga(2);
  expect(await q('SELECT status FROM orders WHERE id = $1', [o.orderId])).toEqual([{ status: 'failed' }]);
  expect(await events(o.orderId)).toEqual(['created', 'compensation_failed', 'failed']);
  // Not settled yet: the audit names the charge left standing and the unfinished refund.
  expect((await audit(o.orderId)).violations.join('\n')).toContain('payment is still captured');

  const by = { by: 'cli:ada', note: 'provider fixed the refund limit' };
  const retry = () => retryCompensation({ client: ctx.client, db: ctx.db, orderId: o.orderId, ...by });
  expect(await retry()).toMatchObject({ retried: [], stillFailing: [{ step: 'charge-payment', error: expect.stringContaining('400') }] });
  expect(await retry()).toMatchObject({ orderId: o.orderId, workflowId: wf, retried: ['charge-payment'], stillFailing: [] });
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'compensated', failure: { type: expect.any(String) } });

  // One refund, under the second retry round's key; the charge refunded at the provider and in our books.
  expect(await q('SELECT idempotency_key FROM provider_refunds WHERE idempotency_key LIKE $1 ORDER BY 1', [`${wf}/%`])).toEqual([
    { idempotency_key: `${wf}/charge-payment/undo/retry-2` },
  ]);
  expect(await q('SELECT status FROM provider_charges WHERE idempotency_key = $1', [`${wf}/charge-payment`])).toEqual([{ status: 'refunded' }]);
  expect(await q('SELECT status FROM payments WHERE idempotency_key = $1', [`${wf}/charge-payment`])).toEqual([{ status: 'refunded' }]);
  expect(await q("SELECT state FROM step_ledger WHERE key = $1", [`${wf}/charge-payment/undo`])).toEqual([{ state: 'completed' }]);
  const [row] = await q<{ compensation_failures: { step: string; resolution?: Record<string, unknown> }[] }>(
    'SELECT compensation_failures FROM orders WHERE id = $1',
    [o.orderId],
  );
  expect(row!.compensation_failures).toEqual([
    expect.objectContaining({ step: 'charge-payment', resolution: { how: 'retried', ...by, at: expect.any(String) } }),
  ]);
  expect(await events(o.orderId)).toEqual(['created', 'compensation_failed', 'failed', 'compensation_resolved']);
  expect((await audit(o.orderId)).violations).toEqual([]);
  // Both actions are on record, who asked and how each ended.
  expect(await q('SELECT actor, action, note, outcome IS NOT NULL AS finished FROM operator_actions WHERE order_id = $1 ORDER BY id', [o.orderId])).toEqual([
    { actor: 'cli:ada', action: 'retry-compensation', note: by.note, finished: true },
    { actor: 'cli:ada', action: 'retry-compensation', note: by.note, finished: true },
  ]);
});

test('settled by hand: the saga ends CompensationFailed with the resolution, the order says who and why, and the audit accounts for the charge', async () => {
  const { o, wf, handle } = await heldSaga(1_000);
  expect(await resolve({ client: ctx.client, db: ctx.db, orderId: o.orderId, by: 'admin:ops', note: 'refunded by bank transfer, ticket 42' })).toMatchObject({
    steps: ['charge-payment'],
    via: 'saga',
  });
  const failure = await handle.result().then(
    () => undefined,
    (err: { cause?: { type?: string; details?: unknown[] } }) => err.cause,
  );
  expect(failure?.type).toBe('CompensationFailed');
  expect(failure?.details?.[0]).toMatchObject({ resolution: { how: 'manual', by: 'admin:ops', note: 'refunded by bank transfer, ticket 42' } });
  // The charge stands (it was settled outside), the refund never applied and its ledger row stays as it was.
  expect(await q('SELECT status FROM provider_charges WHERE idempotency_key = $1', [`${wf}/charge-payment`])).toEqual([{ status: 'succeeded' }]);
  expect(await q('SELECT state FROM step_ledger WHERE key = $1', [`${wf}/charge-payment/undo`])).toEqual([{ state: 'pending' }]);
  const [row] = await q<{ compensation_failures: { resolution?: Record<string, unknown> }[] }>('SELECT compensation_failures FROM orders WHERE id = $1', [o.orderId]);
  expect(row!.compensation_failures[0]!.resolution).toEqual({ how: 'manual', by: 'admin:ops', note: 'refunded by bank transfer, ticket 42', at: expect.any(String) });
  expect(await events(o.orderId)).toEqual(['created', 'compensation_failed', 'failed', 'compensation_resolved']);
  // The books: our own are accounted for; the provider's charge without a refund is the simulated provider's reconciliation to report.
  expect((await auditBooks(ctx.db, { orderIds: [o.orderId], settled: true })).violations).toEqual([]);
});

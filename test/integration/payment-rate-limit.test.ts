/**
 * deps.paymentsPerSecond through the payment activities: the simulated payment
 * provider (real HTTP, real PostgreSQL) records its charges spread at that rate,
 * whichever worker sends them, and without the setting no bucket is kept.
 * Times are bounded from below only; the provider's own rows are what is read.
 */
import { createActivities } from '../../activities';
import { PAYMENT_PROVIDER_LIMIT } from '../../activities/payments';
import { LedgerFailure } from '../../packages/toolkit/src/ledger/ledger';
import { Step } from '../../workflows/order/steps';
import type { Money } from '../../workflows/order/types';
import { runActivity } from '../helpers/activity-env';
import { createTestContext, uniqueId, type TestContext } from '../helpers/context';
import { busiestSecond } from '../helpers/rate';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext('payrate');
});
afterAll(async () => {
  await ctx?.close();
});

const money: Money = { amountMinor: 1_250, currency: 'EUR' };

function chargeInput() {
  const orderId = uniqueId('o');
  return { key: `order-${orderId}/${Step.chargePayment}`, orderId, amount: money, paymentToken: 'tok_visa' };
}

/** When the provider recorded each charge, in ms, sorted. */
async function providerSaw(keys: string[]): Promise<number[]> {
  const { rows } = await ctx.db.query<{ at: number; status: string }>(
    `SELECT extract(epoch FROM created_at)::double precision * 1000 AS at, status
       FROM provider_charges WHERE idempotency_key = ANY($1)`,
    [keys],
  );
  expect(rows.map((r) => r.status)).toEqual(keys.map(() => 'succeeded'));
  return rows.map((r) => r.at).sort((a, b) => a - b);
}

test('with paymentsPerSecond, the provider sees the charges of two workers spread at that rate', async () => {
  const R = 4;
  const B = Math.max(1, Math.ceil(R)); // the burst payments.ts gives the limiter
  const N = 12;
  // Two workers' activities, each built from its own deps, as two processes would.
  const workers = [createActivities({ ...ctx.deps, paymentsPerSecond: R }), createActivities({ ...ctx.deps, paymentsPerSecond: R })];
  const inputs = Array.from({ length: N }, chargeInput);
  const results = await Promise.all(inputs.map((input, i) => runActivity(workers[i % 2]!.chargePayment, input)));
  expect(new Set(results.map((r) => r.chargeId)).size).toBe(N);

  const at = await providerSaw(inputs.map((i) => i.key));
  expect(busiestSecond(at)).toBeLessThanOrEqual(R + B);
  // The N - B charges beyond the burst each waited a turn 1/R after the one before.
  expect(at[N - 1]! - at[0]!).toBeGreaterThanOrEqual(((N - B - 1) / R) * 1000);
  const { rows: payments } = await ctx.db.query<{ status: string }>(`SELECT status FROM payments WHERE idempotency_key = ANY($1)`, [
    inputs.map((i) => i.key),
  ]);
  expect(payments.map((p) => p.status)).toEqual(inputs.map(() => 'captured'));
  const { rows: buckets } = await ctx.db.query(`SELECT 1 FROM ledger_rate_limits WHERE name = $1`, [PAYMENT_PROVIDER_LIMIT]);
  expect(buckets).toHaveLength(1);
});

/** Sets the shared bucket's tokens now (a debt of 1000 at 4/s: no turn within PAYMENT_MAX_WAIT_MS). */
const setBucket = (tokens: number) =>
  ctx.db.query(`UPDATE ledger_rate_limits SET tokens = $2, updated_at = clock_timestamp() WHERE name = $1`, [PAYMENT_PROVIDER_LIMIT, tokens]);

const rowCount = async (sql: string, key: string) => (await ctx.db.query(sql, [key])).rowCount;

test('with no turn in reach, a charge is refused before anything is recorded or sent, and so is a refund', async () => {
  const acts = createActivities({ ...ctx.deps, paymentsPerSecond: 4 });
  const charged = chargeInput();
  const { chargeId } = await runActivity(acts.chargePayment, charged);
  await setBucket(-1000);

  const later = chargeInput();
  const refused = await runActivity(acts.chargePayment, later).then(
    () => undefined,
    (err: { type?: unknown; nonRetryable?: unknown }) => ({ type: err.type, nonRetryable: err.nonRetryable }),
  );
  expect(refused).toEqual({ type: LedgerFailure.RateLimited, nonRetryable: false });
  expect(await rowCount(`SELECT 1 FROM step_ledger WHERE key = $1`, later.key)).toBe(0);
  expect(await rowCount(`SELECT 1 FROM provider_charges WHERE idempotency_key = $1`, later.key)).toBe(0);

  const undo = { key: `${charged.key}/undo`, forwardKey: charged.key, orderId: charged.orderId };
  const refundRefused = await runActivity(acts.refundPayment, undo).then(
    () => undefined,
    (err: { type?: unknown }) => err.type,
  );
  expect(refundRefused).toBe(LedgerFailure.RateLimited);
  expect(await rowCount(`SELECT 1 FROM provider_refunds WHERE charge_id = $1`, chargeId)).toBe(0);

  // The turns come back: the retries go through.
  await setBucket(4);
  expect(await runActivity(acts.refundPayment, undo)).toEqual({ status: 'refunded' });
  const { rows } = await ctx.db.query<{ status: string }>(`SELECT status FROM provider_charges WHERE id = $1`, [chargeId]);
  expect(rows.map((r) => r.status)).toEqual(['refunded']);
  expect((await runActivity(acts.chargePayment, later)).chargeId).toMatch(/^ch_/);
});

test('without paymentsPerSecond no turn is taken: the bucket is left as it is', async () => {
  await setBucket(-1000);
  const acts = createActivities(ctx.deps);
  const input = chargeInput();
  expect((await runActivity(acts.chargePayment, input)).chargeId).toMatch(/^ch_/);
  const { rows } = await ctx.db.query<{ tokens: number }>(`SELECT tokens FROM ledger_rate_limits WHERE name = $1`, [PAYMENT_PROVIDER_LIMIT]);
  expect(rows.map((r) => r.tokens)).toEqual([-1000]);
});

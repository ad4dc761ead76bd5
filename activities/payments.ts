import { Step } from '../workflows/order/steps';
import { providerKey, type Money, type StepInput, type UndoInput } from '../workflows/order/types';
import { createRateLimiter, forwardEffect } from '@sagaflow/toolkit/ledger';
import type { Ledger, RateLimiter } from '@sagaflow/toolkit/ledger';
import type { ActivityDeps } from './deps';
import { withHeartbeat } from './provider-http';
import { paymentProviderClient } from './providers';

type ChargeInput = StepInput & { amount: Money; paymentToken: string };

/** The bucket every worker on the database draws from before any request to the payment provider. */
export const PAYMENT_PROVIDER_LIMIT = 'payment-provider';

/**
 * The longest a payment request waits for its turn. Past it the attempt fails with the retryable
 * RateLimited and the retry policy backs off, instead of a backlog queueing in the bucket's debt.
 * Leaves room for the provider call (PROVIDER_TIMEOUT_MS) inside the step's 15 s start-to-close.
 */
const PAYMENT_MAX_WAIT_MS = 5_000;

/**
 * deps.paymentsPerSecond as a limiter kept in PostgreSQL (the ledger's createRateLimiter), so the
 * cap holds across every worker on the database, whether the payment step runs as an activity or
 * as a local activity in the workflow worker. Burst: createRateLimiter's default, one second's
 * worth, max(1, ceil(perSecond)), so a quiet provider takes a second's requests at once, then one
 * every 1/perSecond.
 */
function paymentProviderLimiter(deps: ActivityDeps): RateLimiter | undefined {
  if (deps.paymentsPerSecond === undefined) return undefined;
  return createRateLimiter(deps.db, {
    name: PAYMENT_PROVIDER_LIMIT,
    perSecond: deps.paymentsPerSecond,
    maxWaitMs: PAYMENT_MAX_WAIT_MS,
  });
}

export function createPaymentActivities(deps: ActivityDeps, books: Ledger) {
  const ledger = books.step(Step.chargePayment);
  const provider = paymentProviderClient(deps);
  const limiter = paymentProviderLimiter(deps);
  /**
   * Waits for the payment provider's limiter, when deps.paymentsPerSecond sets one. The wait
   * happens outside any transaction (the ledger opens none around a call), heartbeats like the
   * call itself (a turn seconds away must not look like a dead worker), and ends when the
   * activity is cancelled.
   */
  const turn = async (): Promise<void> => {
    if (limiter) await withHeartbeat((signal) => limiter.acquire(signal));
  };
  return {
    async chargePayment(input: ChargeInput): Promise<{ chargeId: string }> {
      // The turn comes before the ledger claims the step: an attempt refused a turn (RateLimited)
      // leaves no pending charge behind, so a saga that gives up on it compensates with nothing to
      // repeat. An attempt answered from the ledger spends a turn too; a duplicate is rare.
      await turn();
      return ledger.external(input.key, input, {
        // Statements, not functions of the transaction: each goes with its transaction's COMMIT.
        prepareStatement: {
          text: `INSERT INTO payments (idempotency_key, order_id, amount_minor, currency, status)
                 VALUES ($1, $2, $3, $4, 'pending') ON CONFLICT (idempotency_key) DO NOTHING`,
          values: [input.key, input.orderId, input.amount.amountMinor, input.amount.currency],
        },
        call: () => provider.charge(input.key, { amount: input.amount, source: input.paymentToken }),
        confirmStatement: (outcome) => ({
          text: `UPDATE payments SET status = $2, provider_charge_id = $3, updated_at = now()
                  WHERE idempotency_key = $1 AND status = 'pending'`,
          values: [input.key, outcome.ok ? 'captured' : 'declined', outcome.ok ? outcome.result.chargeId : null],
        }),
      });
    },

    /** Refunds what the charge step took: nothing if it never charged or was declined. */
    async refundPayment(input: UndoInput): Promise<{ status: 'refunded' | 'nothing_to_refund' }> {
      return ledger.externalUndo<{ status: 'refunded' | 'nothing_to_refund' }, { chargeId: string }>(input.key, input, {
        async call(ctx) {
          const charge = await forwardEffect<{ chargeId: string }, ChargeInput>(ctx, async (forward) => {
            await turn();
            const outcome = await provider.charge(ctx.forwardKey, { amount: forward.amount, source: forward.paymentToken });
            return outcome.ok ? outcome.result : null;
          });
          if (!charge) return { status: 'nothing_to_refund' };
          await turn();
          return provider.refund(providerKey(input), charge.chargeId);
        },
        // 'refunded' means money came back; otherwise no money was ever taken under this key.
        confirmStatement: (result, { forwardKey }) => ({
          text: `UPDATE payments SET status = CASE WHEN $2 = 'refunded' THEN 'refunded' ELSE 'voided' END,
                        updated_at = now()
                  WHERE idempotency_key = $1 AND status IN ('pending', 'captured')`,
          values: [forwardKey, result.status],
        }),
      });
    },
  };
}

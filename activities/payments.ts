import { Step } from '../workflows/order/steps';
import { providerKey, type Money, type StepInput, type UndoInput } from '../workflows/order/types';
import { forwardEffect } from '@sagaflow/toolkit/ledger';
import type { Ledger } from '@sagaflow/toolkit/ledger';
import type { ActivityDeps } from './deps';
import { paymentProviderClient } from './providers';

type ChargeInput = StepInput & { amount: Money; paymentToken: string };

export function createPaymentActivities(deps: ActivityDeps, books: Ledger) {
  const ledger = books.step(Step.chargePayment);
  const provider = paymentProviderClient(deps);
  return {
    async chargePayment(input: ChargeInput): Promise<{ chargeId: string }> {
      return ledger.external(input.key, input, {
        async prepare(tx) {
          await tx.query(
            `INSERT INTO payments (idempotency_key, order_id, amount_minor, currency, status)
             VALUES ($1, $2, $3, $4, 'pending') ON CONFLICT (idempotency_key) DO NOTHING`,
            [input.key, input.orderId, input.amount.amountMinor, input.amount.currency],
          );
        },
        call: () => provider.charge(input.key, { amount: input.amount, source: input.paymentToken }),
        async confirm(tx, outcome) {
          await tx.query(
            `UPDATE payments SET status = $2, provider_charge_id = $3, updated_at = now()
              WHERE idempotency_key = $1 AND status = 'pending'`,
            [input.key, outcome.ok ? 'captured' : 'declined', outcome.ok ? outcome.result.chargeId : null],
          );
        },
      });
    },

    /** Refunds what the charge step took: nothing if it never charged or was declined. */
    async refundPayment(input: UndoInput): Promise<{ status: 'refunded' | 'nothing_to_refund' }> {
      return ledger.externalUndo<{ status: 'refunded' | 'nothing_to_refund' }, { chargeId: string }>(input.key, input, {
        async call(ctx) {
          const charge = await forwardEffect<{ chargeId: string }, ChargeInput>(ctx, async (forward) => {
            const outcome = await provider.charge(ctx.forwardKey, { amount: forward.amount, source: forward.paymentToken });
            return outcome.ok ? outcome.result : null;
          });
          return charge ? provider.refund(providerKey(input), charge.chargeId) : { status: 'nothing_to_refund' };
        },
        async confirm(tx, result, { forwardKey }) {
          // 'refunded' means money came back; otherwise no money was ever taken under this key.
          await tx.query(
            `UPDATE payments SET status = CASE WHEN $2 = 'refunded' THEN 'refunded' ELSE 'voided' END,
                    updated_at = now()
              WHERE idempotency_key = $1 AND status IN ('pending', 'captured')`,
            [forwardKey, result.status],
          );
        },
      });
    },
  };
}

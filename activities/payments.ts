import { Step } from '../workflows/order/steps';
import type { Money, StepInput, UndoInput } from '../workflows/order/types';
import { ledgerOf, type ActivityDeps } from './deps';
import { paymentProviderClient } from './providers';

export function createPaymentActivities(deps: ActivityDeps) {
  const ledger = ledgerOf(deps).step(Step.chargePayment);
  const provider = paymentProviderClient(deps);
  return {
    async chargePayment(input: StepInput & { amount: Money; paymentToken: string }): Promise<{ chargeId: string }> {
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

    async refundPayment(input: UndoInput): Promise<{ status: string }> {
      return ledger.externalUndo(input.key, input, {
        call: ({ forwardKey }) => provider.refund(input.key, forwardKey),
        async confirm(tx, result, { forwardKey }) {
          // The provider is the source of truth: 'refunded' means money came back;
          // anything else means no money was ever taken under this key.
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

import { boundLedger } from '../src/ledger/ledger';
import { failOnIdempotencyAnswer, postIdempotent } from '../src/services/clients';
import { withHeartbeat } from './heartbeat';
import { FailureType } from '../workflows/failures';
import { Step } from '../workflows/steps';
import type { Money, StepInput, UndoInput } from '../workflows/types';
import type { ActivityDeps } from './deps';

interface ChargeBody {
  id?: string;
  status?: string;
  charge?: { id?: string };
}

export function createPaymentActivities(deps: ActivityDeps) {
  const ledger = boundLedger(deps);
  return {
    async chargePayment(input: StepInput & { amount: Money; paymentToken: string }): Promise<{ chargeId: string }> {
      return ledger.runExternalStep<{ chargeId: string }>({ key: input.key, step: Step.chargePayment, input }, {
        async prepare(tx) {
          await tx.query(
            `INSERT INTO payments (idempotency_key, order_id, amount_minor, currency, status)
             VALUES ($1, $2, $3, $4, 'pending') ON CONFLICT (idempotency_key) DO NOTHING`,
            [input.key, input.orderId, input.amount.amountMinor, input.amount.currency],
          );
        },
        async call() {
          const answer = await withHeartbeat((signal) =>
            postIdempotent<ChargeBody>(
              `${deps.paymentProviderUrl}/charges`,
              input.key,
              { amount_minor: input.amount.amountMinor, currency: input.amount.currency, source: input.paymentToken },
              deps.providerTimeoutMs,
              signal,
            ),
          );
          failOnIdempotencyAnswer(answer, input.key);
          if (answer.status === 402) {
            return {
              ok: false,
              failure: { type: FailureType.PaymentDeclined, message: 'card declined', details: [answer.body] },
            };
          }
          return { ok: true, result: { chargeId: String(answer.body.id) } };
        },
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
      return ledger.runExternalUndo<{ status: string }>({ ...input, step: Step.chargePayment, input }, {
        async call() {
          const answer = await withHeartbeat((signal) =>
            postIdempotent<{ status: string }>(
              `${deps.paymentProviderUrl}/refunds`,
              input.key,
              { charge_key: input.forwardKey },
              deps.providerTimeoutMs,
              signal,
            ),
          );
          failOnIdempotencyAnswer(answer, input.key);
          return { status: answer.body.status };
        },
        async confirm(tx, result) {
          // The provider is the source of truth: 'refunded' means money came back;
          // anything else means no money was ever taken under this key.
          await tx.query(
            `UPDATE payments SET status = CASE WHEN $2 = 'refunded' THEN 'refunded' ELSE 'voided' END,
                    updated_at = now()
              WHERE idempotency_key = $1 AND status IN ('pending', 'captured')`,
            [input.forwardKey, result.status],
          );
        },
      });
    },
  };
}

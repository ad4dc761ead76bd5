import { ApplicationFailure } from '@temporalio/common';
import { FailureType } from '../workflows/order/failures';
import { Step } from '../workflows/order/steps';
import type { Money, StepInput, UndoInput } from '../workflows/order/types';
import type { Ledger } from '@sagaflow/toolkit/ledger';
import type { ActivityDeps } from './deps';

/** Orders above this many minor units are held for review rather than charged. */
export const FRAUD_AMOUNT_LIMIT_MINOR = 500_000;

/** A deterministic risk score: the same order always gets the same decision, so replays agree. */
export function assessRisk(input: { amount: Money; paymentToken: string }): { score: number; reasons: string[] } {
  const reasons: string[] = [];
  let score = 10;
  if (input.paymentToken === 'tok_fraud') {
    score += 90;
    reasons.push('payment method reported as stolen');
  }
  if (input.amount.amountMinor > FRAUD_AMOUNT_LIMIT_MINOR) {
    score += 60;
    reasons.push(`amount above ${FRAUD_AMOUNT_LIMIT_MINOR} minor units`);
  }
  return { score: Math.min(score, 100), reasons };
}

export function createFraudActivities(deps: Pick<ActivityDeps, 'db'>, books: Ledger) {
  const ledger = books.step(Step.fraudCheck);
  return {
    async checkFraud(input: StepInput & { amount: Money; paymentToken: string }): Promise<{ score: number }> {
      // One statement whose answer the step does not need: it goes with the step's record, one round trip.
      return ledger.localStatement(input.key, input, () => {
        const { score, reasons } = assessRisk(input);
        if (score >= 70) {
          throw ApplicationFailure.create({
            message: `fraud suspected (score ${score}): ${reasons.join('; ')}`,
            type: FailureType.FraudSuspected,
            nonRetryable: true,
            details: [{ score, reasons }],
          });
        }
        return {
          statement: {
            text: `INSERT INTO fraud_checks (order_id, decision, score, reasons, status) VALUES ($1, 'approved', $2, $3, 'active')`,
            values: [input.orderId, score, JSON.stringify(reasons)],
          },
          result: { score },
        };
      });
    },

    async voidFraudCheck(input: UndoInput): Promise<{ voided: boolean }> {
      return ledger.localUndo(input.key, input, async (tx) => {
        const res = await tx.query(
          `UPDATE fraud_checks SET status = 'voided', updated_at = now() WHERE order_id = $1 AND status = 'active'`,
          [input.orderId],
        );
        return { voided: res.rowCount === 1 };
      });
    },
  };
}

import { ApplicationFailure } from '@temporalio/common';
import { boundLedger } from '../src/ledger/ledger';
import { insertOrder, orderMatches } from '../src/orders/repository';
import { FailureType } from '../workflows/failures';
import { Step } from '../workflows/steps';
import type { OrderInput, StepInput, UndoInput } from '../workflows/types';
import type { ActivityDeps } from './deps';

export function createOrderActivities(deps: Pick<ActivityDeps, 'db' | 'ledgerHooks'>) {
  const ledger = boundLedger(deps);
  return {
    async recordOrder(input: { key: string; order: OrderInput }): Promise<{ orderId: string }> {
      const { order } = input;
      return ledger.runLocalStep({ key: input.key, step: Step.recordOrder, input: order }, async (tx) => {
        // The API writes the order row with its idempotency key; then this step only confirms it.
        if (!(await insertOrder(tx, order, null)) && !(await orderMatches(tx, order))) {
          throw ApplicationFailure.nonRetryable(
            `order ${order.orderId} already exists with other contents`,
            FailureType.InvalidInput,
          );
        }
        return { orderId: order.orderId };
      });
    },

    async cancelOrder(input: UndoInput & { status: 'cancelled' | 'failed'; reason: string }): Promise<{ changed: boolean }> {
      return ledger.runLocalUndo({ ...input, step: Step.recordOrder, input }, async (tx, forward) => {
        // Only an order this saga recorded is ours to close; a failed record step touched nothing.
        if (forward?.state !== 'completed') return { changed: false };
        const res = await tx.query(
          `UPDATE orders SET status = $2, failure_reason = $3, updated_at = now()
            WHERE id = $1 AND status = 'pending'`,
          [input.orderId, input.status, input.reason],
        );
        return { changed: res.rowCount === 1 };
      });
    },

    /** The last, retriable step: the order is done and its held stock leaves the shelf. */
    async completeOrder(input: StepInput): Promise<{ completed: true }> {
      return ledger.runLocalStep({ key: input.key, step: Step.completeOrder, input }, async (tx) => {
        // Data-modifying CTEs always run, referenced or not: one round trip for all three tables.
        await tx.query(
          `WITH consumed AS (
             UPDATE reservations SET status = 'consumed', updated_at = now()
              WHERE order_id = $1 AND status = 'held' RETURNING sku, quantity),
           stock AS (
             UPDATE inventory i SET on_hand = i.on_hand - c.quantity, reserved = i.reserved - c.quantity
               FROM consumed c WHERE i.sku = c.sku RETURNING i.sku)
           UPDATE orders SET status = 'completed', updated_at = now()
            WHERE id = $1 AND status = 'pending'`,
          [input.orderId],
        );
        return { completed: true as const };
      });
    },
  };
}

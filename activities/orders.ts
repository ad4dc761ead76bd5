import { ApplicationFailure } from '@temporalio/common';
import { runLocalStep, runLocalUndo } from '../src/ledger/ledger';
import { FailureType } from '../workflows/failures';
import { Step } from '../workflows/steps';
import type { OrderInput, StepInput, UndoInput } from '../workflows/types';
import type { ActivityDeps } from './deps';

export function createOrderActivities({ db }: Pick<ActivityDeps, 'db'>) {
  return {
    async recordOrder(input: { key: string; order: OrderInput }): Promise<{ orderId: string }> {
      const { order } = input;
      return runLocalStep(db, { key: input.key, step: Step.recordOrder, input: order }, async (tx) => {
        const res = await tx.query(
          `WITH o AS (
             INSERT INTO orders (id, customer_id, amount_minor, currency, payment_token, shipping_address)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO NOTHING RETURNING id)
           INSERT INTO order_items (order_id, sku, quantity)
           SELECT o.id, i.sku, i.quantity FROM o, unnest($7::text[], $8::int[]) AS i (sku, quantity)
           RETURNING order_id`,
          [
            order.orderId,
            order.customerId,
            order.amount.amountMinor,
            order.amount.currency,
            order.paymentToken,
            JSON.stringify(order.shippingAddress),
            order.items.map((i) => i.sku),
            order.items.map((i) => i.quantity),
          ],
        );
        if (res.rowCount !== order.items.length) {
          throw ApplicationFailure.nonRetryable(`order ${order.orderId} already exists`, FailureType.InvalidInput);
        }
        return { orderId: order.orderId };
      });
    },

    async cancelOrder(input: UndoInput & { status: 'cancelled' | 'failed'; reason: string }): Promise<{ changed: boolean }> {
      return runLocalUndo(db, { ...input, step: Step.recordOrder, input }, async (tx) => {
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
      return runLocalStep(db, { key: input.key, step: Step.completeOrder, input }, async (tx) => {
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

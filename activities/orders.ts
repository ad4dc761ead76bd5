import { ApplicationFailure } from '@temporalio/common';
import type { Tx } from '../src/db/pool';
import { boundLedger } from '../src/ledger/ledger';
import { FailureType } from '../workflows/failures';
import { Step } from '../workflows/steps';
import type { OrderInput, StepInput, UndoInput } from '../workflows/types';
import type { ActivityDeps } from './deps';

async function sameOrderExists(tx: Tx, order: OrderInput): Promise<boolean> {
  const res = await tx.query<{ same: boolean }>(
    `SELECT o.customer_id = $2 AND o.amount_minor = $3 AND o.currency = $4 AND o.payment_token = $5
            AND o.shipping_address = $6::jsonb
            AND (SELECT array_agg(sku || ':' || quantity ORDER BY sku) FROM order_items WHERE order_id = o.id)
                = (SELECT array_agg(s || ':' || q ORDER BY s) FROM unnest($7::text[], $8::int[]) AS i (s, q)) AS same
       FROM orders o WHERE o.id = $1`,
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
  return res.rows[0]?.same === true;
}

export function createOrderActivities(deps: Pick<ActivityDeps, 'db' | 'ledgerHooks'>) {
  const ledger = boundLedger(deps);
  return {
    async recordOrder(input: { key: string; order: OrderInput }): Promise<{ orderId: string }> {
      const { order } = input;
      return ledger.runLocalStep({ key: input.key, step: Step.recordOrder, input: order }, async (tx) => {
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
        // The API writes the order row with its idempotency key; then this step only confirms it.
        if (res.rowCount === 0 && (await sameOrderExists(tx, order))) return { orderId: order.orderId };
        if (res.rowCount !== order.items.length) {
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

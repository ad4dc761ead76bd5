import { ApplicationFailure } from '@temporalio/common';
import { FailureType } from '../workflows/order/failures';
import { Step } from '../workflows/order/steps';
import type { OrderItem, StepInput, UndoInput } from '../workflows/order/types';
import type { Ledger } from '@sagaflow/toolkit/ledger';
import type { ActivityDeps } from './deps';

export function createInventoryActivities(deps: Pick<ActivityDeps, 'db'>, books: Ledger) {
  const ledger = books.step(Step.reserveInventory);
  return {
    /** Holds stock for every item or for none: one statement, all conditional. */
    async reserveInventory(input: StepInput & { items: OrderItem[] }): Promise<{ reserved: OrderItem[] }> {
      return ledger.local(input.key, input, async (tx) => {
        const res = await tx.query<{ sku: string }>(
          `WITH req AS (
             SELECT sku, quantity FROM unnest($2::text[], $3::int[]) AS r (sku, quantity)),
           held AS (
             UPDATE inventory i SET reserved = i.reserved + req.quantity
               FROM req WHERE i.sku = req.sku AND i.on_hand - i.reserved >= req.quantity
             RETURNING i.sku),
           ins AS (
             INSERT INTO reservations (order_id, sku, quantity, status)
             SELECT $1, req.sku, req.quantity, 'held' FROM req JOIN held ON held.sku = req.sku
             RETURNING sku)
           SELECT sku FROM ins`,
          [input.orderId, input.items.map((i) => i.sku), input.items.map((i) => i.quantity)],
        );
        if (res.rowCount !== input.items.length) {
          const got = new Set(res.rows.map((r) => r.sku));
          const short = input.items.filter((i) => !got.has(i.sku)).map((i) => i.sku);
          // Throwing rolls back the partial hold along with the claim.
          throw ApplicationFailure.create({
            message: `out of stock: ${short.join(', ')}`,
            type: FailureType.OutOfStock,
            nonRetryable: true,
            details: [{ skus: short }],
          });
        }
        return { reserved: input.items };
      });
    },

    async releaseInventory(input: UndoInput): Promise<{ released: number }> {
      return ledger.localUndo(input.key, input, async (tx) => {
        const res = await tx.query(
          `WITH released AS (
             UPDATE reservations SET status = 'released', updated_at = now()
              WHERE order_id = $1 AND status = 'held' RETURNING sku, quantity)
           UPDATE inventory i SET reserved = i.reserved - r.quantity
             FROM released r WHERE i.sku = r.sku`,
          [input.orderId],
        );
        return { released: res.rowCount ?? 0 };
      });
    },
  };
}

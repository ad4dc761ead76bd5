import type { Db, Tx } from '../db/pool';
import type { OrderInput } from '../../workflows/order/types';

export interface OrderRow {
  id: string;
  client_id: string | null;
  customer_id: string;
  amount_minor: string;
  currency: string;
  payment_token: string;
  shipping_address: OrderInput['shippingAddress'];
  status: 'pending' | 'completed' | 'cancelled' | 'failed';
  failure_reason: string | null;
  created_at: Date;
  workflow_id: string;
  items: { sku: string; quantity: number }[];
}

/** An order row's columns and its items, from `orders o`. */
export const ORDER_COLUMNS = `o.id, o.client_id, o.customer_id, o.amount_minor, o.currency, o.payment_token, o.shipping_address,
  o.status, o.failure_reason, o.created_at, o.workflow_id,
  coalesce((SELECT json_agg(json_build_object('sku', i.sku, 'quantity', i.quantity) ORDER BY i.sku)
              FROM order_items i WHERE i.order_id = o.id), '[]') AS items`;

/** $1..$8 of the statements below: id, customer, amount, currency, token, address, SKUs, quantities. */
function orderParams(order: OrderInput): unknown[] {
  return [
    order.orderId,
    order.customerId,
    order.amount.amountMinor,
    order.amount.currency,
    order.paymentToken,
    JSON.stringify(order.shippingAddress),
    order.items.map((i) => i.sku),
    order.items.map((i) => i.quantity),
  ];
}

export interface OrderOwner {
  /** The API client the order belongs to; none for a saga started directly. */
  clientId?: string | null;
  /** The saga that owns the row: only its compensation may close it. */
  workflowId: string;
  /** The row is written by the running saga itself, so its saga is known to be started. */
  sagaStarted?: boolean;
}

/**
 * The order row and its items in one statement, inside the caller's
 * transaction. False if an order with this ID already exists (nothing written).
 */
export async function insertOrder(tx: Tx, order: OrderInput, owner: OrderOwner): Promise<boolean> {
  const res = await tx.query(
    `WITH o AS (
       INSERT INTO orders (id, customer_id, amount_minor, currency, payment_token, shipping_address, client_id,
                           workflow_id, saga_started_at)
       VALUES ($1, $2, $3, $4, $5, $6, $9, $10, CASE WHEN $11::boolean THEN now() END)
       ON CONFLICT (id) DO NOTHING RETURNING id)
     INSERT INTO order_items (order_id, sku, quantity)
     SELECT o.id, i.sku, i.quantity FROM o, unnest($7::text[], $8::int[]) AS i (sku, quantity)`,
    [...orderParams(order), owner.clientId ?? null, owner.workflowId, owner.sagaStarted === true],
  );
  return (res.rowCount ?? 0) > 0;
}

/** Notes that the order's saga exists, so the recovery job no longer considers it. */
export async function markSagaStarted(db: Db, orderId: string): Promise<void> {
  await db.query(`UPDATE orders SET saga_started_at = now() WHERE id = $1 AND saga_started_at IS NULL`, [orderId]);
}

/**
 * Pending orders whose saga was never seen to start, created before `olderThanMs`
 * ago: their request died between its commit and the start. Locked with SKIP
 * LOCKED inside the caller's transaction, so several recoverers share the work.
 */
export async function lockAbandonedOrders(tx: Tx, olderThanMs: number, limit: number): Promise<OrderRow[]> {
  const res = await tx.query<OrderRow>(
    `SELECT ${ORDER_COLUMNS} FROM orders o
      WHERE o.saga_started_at IS NULL AND o.status = 'pending'
        AND o.created_at < now() - make_interval(secs => $1::double precision / 1000)
      ORDER BY o.created_at LIMIT $2
      FOR UPDATE SKIP LOCKED`,
    [olderThanMs, limit],
  );
  return res.rows;
}

/** Whether the stored order with this ID has exactly these contents. */
export async function orderMatches(tx: Tx, order: OrderInput): Promise<boolean> {
  const res = await tx.query<{ same: boolean }>(
    `SELECT o.customer_id = $2 AND o.amount_minor = $3 AND o.currency = $4 AND o.payment_token = $5
            AND o.shipping_address = $6::jsonb
            AND (SELECT array_agg(sku || ':' || quantity ORDER BY sku) FROM order_items WHERE order_id = o.id)
                = (SELECT array_agg(s || ':' || q ORDER BY s) FROM unnest($7::text[], $8::int[]) AS i (s, q)) AS same
       FROM orders o WHERE o.id = $1`,
    orderParams(order),
  );
  return res.rows[0]?.same === true;
}

/** One order with its items; with clientId, only if it belongs to that client. */
export async function findOrder(db: Db, orderId: string, clientId?: string): Promise<OrderRow | undefined> {
  const res = await db.query<OrderRow>(
    `SELECT ${ORDER_COLUMNS} FROM orders o WHERE o.id = $1 AND ($2::text IS NULL OR o.client_id = $2)`,
    [orderId, clientId ?? null],
  );
  return res.rows[0];
}

export function toOrderInput(row: OrderRow): OrderInput {
  return {
    orderId: row.id,
    customerId: row.customer_id,
    items: row.items,
    amount: { amountMinor: Number(row.amount_minor), currency: row.currency },
    paymentToken: row.payment_token,
    shippingAddress: row.shipping_address,
  };
}

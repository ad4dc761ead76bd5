import type { Db } from '../db/pool';

/** What the books say about one order, read from the rows of every system. */
export interface OrderBooks {
  orderId: string;
  status: string;
  amountMinor: number;
  /** Money the provider holds for this order: succeeded charges not refunded. */
  netChargedMinor: number;
  /** Labels the carrier holds that were not voided. */
  activeShipments: number;
  heldUnits: number;
  consumedUnits: number;
  /** Empty when the order's books balance. */
  problems: string[];
}

/**
 * The saga's promise, checked from the database: a completed order is paid once
 * and shipped once; any other order holds no money, no label and no stock.
 */
export async function reconcileOrder(db: Db, orderId: string): Promise<OrderBooks> {
  const res = await db.query<{
    status: string | null;
    amount_minor: string | null;
    net_charged: string;
    active_shipments: string;
    held: string;
    consumed: string;
  }>(
    `SELECT o.status, o.amount_minor,
       (SELECT coalesce(sum(c.amount_minor), 0) FROM provider_charges c
         WHERE c.idempotency_key LIKE $2 AND c.status = 'succeeded') AS net_charged,
       (SELECT count(*) FROM carrier_shipments s
         WHERE s.idempotency_key LIKE $2 AND s.status = 'created') AS active_shipments,
       (SELECT coalesce(sum(quantity), 0) FROM reservations WHERE order_id = $1 AND status = 'held') AS held,
       (SELECT coalesce(sum(quantity), 0) FROM reservations WHERE order_id = $1 AND status = 'consumed') AS consumed
     FROM (SELECT $1::text AS id) AS q LEFT JOIN orders o ON o.id = q.id`,
    [orderId, `order-${likeEscape(orderId)}/%`],
  );
  const row = res.rows[0]!;
  const books: OrderBooks = {
    orderId,
    status: row.status ?? 'absent',
    amountMinor: Number(row.amount_minor ?? 0),
    netChargedMinor: Number(row.net_charged),
    activeShipments: Number(row.active_shipments),
    heldUnits: Number(row.held),
    consumedUnits: Number(row.consumed),
    problems: [],
  };
  if (books.status === 'completed') {
    if (books.netChargedMinor !== books.amountMinor) books.problems.push(`charged ${books.netChargedMinor}, expected ${books.amountMinor}`);
    if (books.activeShipments !== 1) books.problems.push(`${books.activeShipments} active shipments, expected 1`);
    if (books.heldUnits !== 0) books.problems.push(`${books.heldUnits} units still held`);
  } else if (books.status !== 'pending') {
    if (books.netChargedMinor !== 0) books.problems.push(`money taken (${books.netChargedMinor}) for a ${books.status} order`);
    if (books.activeShipments !== 0) books.problems.push(`shipment created for a ${books.status} order`);
    if (books.heldUnits !== 0) books.problems.push(`stock held (${books.heldUnits}) for a ${books.status} order`);
    if (books.consumedUnits !== 0) books.problems.push(`stock consumed for a ${books.status} order`);
  }
  return books;
}

/** Stock is conserved: what is reserved equals what held reservations say, per SKU. */
export async function reconcileStock(db: Db): Promise<{ sku: string; onHand: number; reserved: number; held: number }[]> {
  const res = await db.query<{ sku: string; on_hand: number; reserved: number; held: string }>(
    `SELECT i.sku, i.on_hand, i.reserved,
            coalesce((SELECT sum(quantity) FROM reservations r WHERE r.sku = i.sku AND r.status = 'held'), 0) AS held
       FROM inventory i ORDER BY i.sku`,
  );
  return res.rows.map((r) => ({ sku: r.sku, onHand: r.on_hand, reserved: r.reserved, held: Number(r.held) }));
}

function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

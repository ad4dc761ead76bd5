import { z } from 'zod';
import type { Db } from '../db/pool';
import { id } from '../orders/schema';

/**
 * Stock on the shelf. `on_hand` counts the units in the warehouse, `reserved`
 * those held by sagas in flight (released when a saga compensates, taken off
 * the shelf when it completes); an order can reserve `on_hand - reserved`.
 */
export interface StockLevel {
  sku: string;
  onHand: number;
  reserved: number;
  available: number;
}

/** A refusal the operator can act on: the message says what to do instead. */
export class StockError extends Error {}

const skuSchema = id;
const units = z.number().int().min(0).max(1_000_000_000);

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new StockError(`${what}: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}

const toLevel = (r: { sku: string; on_hand: number; reserved: number }): StockLevel => ({
  sku: r.sku,
  onHand: r.on_hand,
  reserved: r.reserved,
  available: r.on_hand - r.reserved,
});

export async function listStock(db: Db, skus?: string[]): Promise<StockLevel[]> {
  const res = await db.query<{ sku: string; on_hand: number; reserved: number }>(
    `SELECT sku, on_hand, reserved FROM inventory WHERE $1::text[] IS NULL OR sku = ANY($1) ORDER BY sku`,
    [skus ?? null],
  );
  return res.rows.map(toLevel);
}

/**
 * Sets the units on hand (a stock count), creating the SKU if it is new. A count
 * below what sagas in flight hold is refused: those units are promised to orders.
 */
export async function setStock(db: Db, sku: string, onHand: number): Promise<StockLevel> {
  parse(skuSchema, sku, 'sku');
  parse(units, onHand, 'units on hand (a whole number from 0)');
  const res = await db.query<{ sku: string; on_hand: number; reserved: number }>(
    `INSERT INTO inventory AS i (sku, on_hand) VALUES ($1, $2)
     ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand WHERE i.reserved <= EXCLUDED.on_hand
     RETURNING sku, on_hand, reserved`,
    [sku, onHand],
  );
  if (res.rows[0]) return toLevel(res.rows[0]);
  const [held] = await listStock(db, [sku]);
  throw new StockError(
    `${sku}: ${held?.reserved ?? 0} units are held by orders in flight; set at least that many on hand, or wait for them to finish`,
  );
}

/** Receives (positive) or writes off (negative) units; the SKU is created on first receipt. */
export async function addStock(db: Db, sku: string, delta: number): Promise<StockLevel> {
  parse(skuSchema, sku, 'sku');
  parse(z.number().int().min(-1_000_000_000).max(1_000_000_000).refine((n) => n !== 0, 'must not be 0'), delta, 'units to add');
  const res = await db.query<{ sku: string; on_hand: number; reserved: number }>(
    delta > 0
      ? `INSERT INTO inventory AS i (sku, on_hand) VALUES ($1, $2)
         ON CONFLICT (sku) DO UPDATE SET on_hand = i.on_hand + EXCLUDED.on_hand
         RETURNING sku, on_hand, reserved`
      : // A write-off may not take units that sagas in flight hold.
        `UPDATE inventory SET on_hand = on_hand + $2 WHERE sku = $1 AND on_hand + $2 >= reserved
         RETURNING sku, on_hand, reserved`,
    [sku, delta],
  );
  if (res.rows[0]) return toLevel(res.rows[0]);
  const [level] = await listStock(db, [sku]);
  if (!level) throw new StockError(`${sku}: no such SKU; receive units (a positive number) to create it`);
  throw new StockError(
    `${sku}: cannot write off ${-delta}; ${level.onHand} on hand, ${level.reserved} held by orders in flight, ${level.available} free`,
  );
}

import { createHash } from 'node:crypto';
import type { Db } from '../db/pool';
import { ORDER_COLUMNS, type OrderRow } from './repository';

/** Every status an order row can have (the CHECK of orders.status). */
export const ORDER_STATUSES = ['pending', 'completed', 'cancelled', 'failed'] as const satisfies readonly OrderRow['status'][];
export type OrderStatus = (typeof ORDER_STATUSES)[number];

/** What a page of orders is drawn from; every field is optional and they combine with AND. */
export interface OrderListFilter {
  /** One API client's orders only. */
  clientId?: string;
  status?: OrderStatus;
  /** Created strictly after / strictly before (an ISO 8601 timestamp or a Date). */
  createdAfter?: string | Date;
  createdBefore?: string | Date;
}

/**
 * Where a page ends: the last order's created_at to the microsecond (as PostgreSQL keeps it,
 * UTC, `2024-05-01T10:00:00.123456Z`) and its ID. The next page is everything below it in
 * (created_at DESC, id DESC) order, so orders inserted meanwhile (newer, above it) never shift
 * a page, and no order is seen twice or skipped.
 */
export interface OrderPosition {
  createdAt: string;
  id: string;
}

export type ListedOrder = OrderRow & { client_name: string | null; saga_started_at: Date | null; position: OrderPosition };

/**
 * One page: $1 client, $2 status, $3 created after, $4 created before, $5 and $6 the position after
 * which the page starts, $7 how many rows. Each optional condition is `$n IS NULL OR …`: pg plans the
 * statement with its values, so the absent ones fold away and the rest are index conditions.
 */
export const LIST_ORDERS_SQL = `SELECT ${ORDER_COLUMNS}, o.saga_started_at, c.name AS client_name,
    to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS position_at
   FROM orders o LEFT JOIN api_clients c ON c.id = o.client_id
  WHERE ($1::text IS NULL OR o.client_id = $1)
    AND ($2::text IS NULL OR o.status = $2)
    AND ($3::timestamptz IS NULL OR o.created_at > $3)
    AND ($4::timestamptz IS NULL OR o.created_at < $4)
    AND ($5::timestamptz IS NULL OR (o.created_at, o.id) < ($5::timestamptz, $6::text))
  ORDER BY o.created_at DESC, o.id DESC
  LIMIT $7`;

/** The most one page holds, whoever asks. */
export const MAX_PAGE = 100;

/**
 * One page of orders, newest first, in one statement: with a client, one range scan of
 * orders_client_created_idx; without, of orders_created_idx. `next` is the position to continue
 * from, or undefined on the last page (one row past the page is read to know).
 */
export async function listOrders(
  db: Db,
  filter: OrderListFilter,
  page: { after?: OrderPosition; limit: number },
): Promise<{ orders: ListedOrder[]; next?: OrderPosition }> {
  if (!Number.isInteger(page.limit) || page.limit < 1 || page.limit > MAX_PAGE) throw new RangeError(`limit: 1 to ${MAX_PAGE}, not ${page.limit}`);
  const res = await db.query<OrderRow & { client_name: string | null; saga_started_at: Date | null; position_at: string }>(
    LIST_ORDERS_SQL,
    [
      filter.clientId ?? null,
      filter.status ?? null,
      filter.createdAfter ?? null,
      filter.createdBefore ?? null,
      page.after?.createdAt ?? null,
      page.after?.id ?? null,
      page.limit + 1,
    ],
  );
  const orders = res.rows.slice(0, page.limit).map(({ position_at, ...row }) => ({ ...row, position: { createdAt: position_at, id: row.id } }));
  const more = res.rows.length > page.limit;
  return { orders, next: more ? orders[orders.length - 1]!.position : undefined };
}

const POSITION_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const ORDER_ID = /^[A-Za-z0-9_-]{1,64}$/;
const VERSION = 'o1';

/**
 * Why a cursor is refused: not one this service wrote, edited since, or written for other filters
 * (a cursor continues the listing it came from, as AIP-158 page tokens do).
 */
export class InvalidCursor extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidCursor';
  }
}

/**
 * The check digits of a cursor: a digest of the position and of the listing it belongs to
 * (`scope`: who lists and with which filters). Not a secret and not a capability (every listing
 * is confined to its caller whatever the cursor says): it tells a cursor edited or cut short, or
 * one sent with other filters, from a position, so that is a 400 rather than a wrong page.
 */
const check = (scope: string, at: string, id: string) =>
  createHash('sha256').update(`${VERSION}\n${scope}\n${at}\n${id}`).digest('base64url').slice(0, 16);

/** The opaque cursor of a position, for a listing described by `scope`. */
export function encodeCursor(position: OrderPosition, scope: string): string {
  return Buffer.from(`${VERSION}.${position.createdAt}.${position.id}.${check(scope, position.createdAt, position.id)}`).toString('base64url');
}

/** The position a cursor names, if this service wrote it for this same listing; otherwise InvalidCursor. */
export function decodeCursor(cursor: string, scope: string): OrderPosition {
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) throw new InvalidCursor('malformed cursor');
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  // One spelling per cursor: base64url that does not re-encode to itself was edited.
  if (Buffer.from(text).toString('base64url') !== cursor) throw new InvalidCursor('malformed cursor');
  const parts = text.split('.');
  if (parts.length !== 5 || parts[0] !== VERSION) throw new InvalidCursor('malformed cursor');
  // The timestamp holds the one '.' before its microseconds.
  const [, seconds, micros, id, digits] = parts as [string, string, string, string, string];
  const createdAt = `${seconds}.${micros}`;
  if (!POSITION_AT.test(createdAt) || !ORDER_ID.test(id) || Number.isNaN(Date.parse(createdAt))) throw new InvalidCursor('malformed cursor');
  if (digits !== check(scope, createdAt, id)) throw new InvalidCursor('the cursor was altered, or belongs to a listing with other filters');
  return { createdAt, id };
}

/** A listing's scope for its cursors: the filters as they were given, in a fixed order. */
export function cursorScope(fields: Record<string, string | number | undefined>): string {
  return JSON.stringify(Object.keys(fields).sort().map((k) => [k, fields[k] ?? null]));
}

import type { Db } from '../db/pool';
import { cursorScope, decodeCursor, encodeCursor, InvalidCursor, listOrders, type ListedOrder } from '../orders/list';
import { orderFields } from './views';
import { Problem } from './problem';
import { LIST_LIMIT_DEFAULT, listOrdersQuery, type OrderList, type OrderSummary } from './schemas';

/** An order as a list shows it: the row, and where its saga is (its live state is GET /orders/{id}). */
export function orderSummaryView(row: ListedOrder): OrderSummary {
  return { ...orderFields(row), workflowId: row.workflow_id };
}

/** The query's parameters, each at most once and all known; anything else is a 400 naming it. */
function parseQuery(query: URLSearchParams) {
  const raw: Record<string, string> = {};
  const errors: { path: string; message: string }[] = [];
  for (const [name, value] of query) {
    if (name in raw) errors.push({ path: name, message: 'given more than once' });
    raw[name] = value;
  }
  const parsed = listOrdersQuery.safeParse(raw);
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      if (i.code === 'unrecognized_keys') for (const k of i.keys) errors.push({ path: k, message: 'unknown query parameter' });
      else errors.push({ path: i.path.join('.') || '(query)', message: i.message });
    }
  }
  if (errors.length || !parsed.success) throw new Problem('invalid-request', errors.map((e) => `${e.path}: ${e.message}`).join('; '), { errors });
  return parsed.data;
}

/**
 * GET /orders: one page of the client's own orders, newest first, and the cursor of the next.
 * A cursor continues the listing it was given for (the same client and filters, any limit).
 */
export async function listClientOrders(db: Db, clientId: string, query: URLSearchParams): Promise<OrderList> {
  const q = parseQuery(query);
  if (q.created_after && q.created_before && Date.parse(q.created_after) >= Date.parse(q.created_before)) {
    const message = 'must be before created_before';
    throw new Problem('invalid-request', `created_after: ${message}`, { errors: [{ path: 'created_after', message }] });
  }
  const scope = cursorScope({ client: clientId, status: q.status, created_after: q.created_after, created_before: q.created_before });
  let after;
  try {
    after = q.cursor === undefined ? undefined : decodeCursor(q.cursor, scope);
  } catch (err) {
    if (!(err instanceof InvalidCursor)) throw err;
    throw new Problem('invalid-request', `cursor: ${err.message}`, { errors: [{ path: 'cursor', message: err.message }] });
  }
  const page = await listOrders(
    db,
    { clientId, status: q.status, createdAfter: q.created_after, createdBefore: q.created_before },
    { after, limit: q.limit ?? LIST_LIMIT_DEFAULT },
  );
  return { orders: page.orders.map(orderSummaryView), next_cursor: page.next ? encodeCursor(page.next, scope) : null };
}

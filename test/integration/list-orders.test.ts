/**
 * GET /orders: an API client pages through its own orders, newest first, with filters, by an
 * opaque keyset cursor. Real PostgreSQL behind a real API; every answer is checked against the
 * rows in `orders`.
 */
import { startApi, type RunningApi } from '../../src/api/server';
import { createApiClient } from '../../src/api/auth';
import { LIST_ORDERS_SQL } from '../../src/orders/list';
import { placeClientOrder } from '../helpers/client-orders';
import { createTestContext, uniqueId, type TestContext } from '../helpers/context';
import { expectProblem, request } from '../helpers/api';

let ctx: TestContext;
let api: RunningApi;

beforeAll(async () => {
  ctx = await createTestContext('list');
  api = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue: uniqueId('list'), log: () => undefined });
});

afterAll(async () => {
  await api?.close();
  await ctx?.close();
});

type Client = { id: string; apiKey: string };
const newClient = (): Promise<Client> => createApiClient(ctx.db, uniqueId('lister'));

const list = (client: Client | undefined, query = '') => request(api.url, `/orders${query}`, client ? { apiKey: client.apiKey } : {});

async function place(client: Client, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(await placeClientOrder(ctx.db, client.id, uniqueId('cust'), 100 + i));
  return ids;
}

/** The client's order IDs as the table orders them, newest first, with an optional extra condition. */
async function idsInTable(clientId: string, where = 'true', params: unknown[] = []): Promise<string[]> {
  const res = await ctx.db.query<{ id: string }>(
    `SELECT id FROM orders WHERE client_id = $1 AND (${where}) ORDER BY created_at DESC, id DESC`,
    [clientId, ...params],
  );
  return res.rows.map((r) => r.id);
}

/** Every page of a listing, following next_cursor; `between` runs after each page. */
async function walk(client: Client, query: string, between: () => Promise<void> = async () => undefined): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const sep = query ? '&' : '';
    const res = await list(client, `?${query}${cursor ? `${sep}cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(res.status).toBe(200);
    pages++;
    ids.push(...res.json.orders.map((o: { id: string }) => o.id));
    cursor = res.json.next_cursor;
    await between();
  } while (cursor !== null && pages < 100);
  return { ids, pages };
}

test("a client sees its own orders only, newest first, each as its row says", async () => {
  const a = await newClient();
  const b = await newClient();
  const mine = await place(a, 3);
  const theirs = await place(b, 2);
  const res = await list(a);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/json');
  expect(res.json.next_cursor).toBeNull();
  expect(res.json.orders.map((o: { id: string }) => o.id)).toEqual(await idsInTable(a.id));
  expect(res.json.orders.map((o: { id: string }) => o.id).sort()).toEqual([...mine].sort());
  expect(res.json.orders.some((o: { id: string }) => theirs.includes(o.id))).toBe(false);
  expect((await list(b)).json.orders.map((o: { id: string }) => o.id)).toEqual(await idsInTable(b.id));

  const { rows } = await ctx.db.query(
    `SELECT o.*, (SELECT json_agg(json_build_object('sku', sku, 'quantity', quantity)) FROM order_items WHERE order_id = o.id) AS items
       FROM orders o WHERE id = $1`,
    [res.json.orders[0].id],
  );
  const row = rows[0];
  expect(res.json.orders[0]).toEqual({
    id: row.id,
    status: row.status,
    customerId: row.customer_id,
    items: row.items,
    amount: { amountMinor: Number(row.amount_minor), currency: row.currency },
    failureReason: row.failure_reason,
    createdAt: row.created_at.toISOString(),
    workflowId: row.workflow_id,
  });
});

test('status, created_after and created_before filter as the rows say, alone and together', async () => {
  const c = await newClient();
  const ids = await place(c, 8);
  // Spread the orders over eight days and four statuses.
  const statuses = ['pending', 'completed', 'failed', 'cancelled'];
  for (const [i, id] of ids.entries()) {
    await ctx.db.query(`UPDATE orders SET created_at = timestamptz '2031-03-01T12:00:00Z' + make_interval(days => $2), status = $3 WHERE id = $1`, [
      id,
      i,
      statuses[i % 4],
    ]);
  }
  const listed = async (query: string) => {
    const res = await list(c, query);
    expect(res.status).toBe(200);
    return res.json.orders.map((o: { id: string }) => o.id);
  };
  for (const status of statuses) {
    const expected = await idsInTable(c.id, 'status = $2', [status]);
    expect(expected).toHaveLength(2);
    expect(await listed(`?status=${status}`)).toEqual(expected);
  }
  const after = '2031-03-03T12:00:00Z';
  const before = '2031-03-07T12:00:00.000+00:00';
  expect(await listed(`?created_after=${after}`)).toEqual(await idsInTable(c.id, 'created_at > $2', [after]));
  expect(await listed(`?created_after=${after}`)).toHaveLength(5);
  expect(await listed(`?created_before=${encodeURIComponent(before)}`)).toEqual(await idsInTable(c.id, 'created_at < $2', [before]));
  // An offset other than UTC names the same instant.
  expect(await listed(`?created_before=${encodeURIComponent('2031-03-07T14:00:00+02:00')}`)).toEqual(await listed(`?created_before=${encodeURIComponent(before)}`));
  const both = await listed(`?status=completed&created_after=${after}&created_before=${encodeURIComponent(before)}`);
  expect(both).toEqual(await idsInTable(c.id, "status = 'completed' AND created_at > $2 AND created_at < $3", [after, before]));
  expect(both).toHaveLength(1);
  expect(await listed('?created_after=2040-01-01T00:00:00Z')).toEqual([]);
});

test('pages walk every order exactly once, in order, while new orders arrive between pages', async () => {
  const c = await newClient();
  const ids = await place(c, 23);
  // Ties on created_at are broken by ID: six orders share one instant, older than the rest, across a page boundary.
  await ctx.db.query(`UPDATE orders SET created_at = timestamptz '2020-01-01T00:00:00.123456Z' WHERE id = ANY($1)`, [ids.slice(5, 11)]);
  const before = await idsInTable(c.id);
  const arrived: string[] = [];
  const { ids: walked, pages } = await walk(c, 'limit=5', async () => {
    arrived.push(...(await place(c, 2)));
  });
  expect(pages).toBe(5);
  expect(walked).toEqual(before);
  expect(new Set(walked).size).toBe(walked.length);
  expect(walked.some((id) => arrived.includes(id))).toBe(false);
  // Those that arrived meanwhile are at the head of a new walk, and nothing else changed.
  const again = await walk(c, 'limit=100');
  expect(again.pages).toBe(1);
  expect(again.ids).toEqual(await idsInTable(c.id));
  expect(again.ids.slice(arrived.length)).toEqual(before);
  // A filtered walk pages through the filtered rows the same way.
  await ctx.db.query(`UPDATE orders SET status = 'completed' WHERE id = ANY($1)`, [before.filter((_, i) => i % 3 === 0)]);
  const completed = await walk(c, 'status=completed&limit=2');
  expect(completed.ids).toEqual(await idsInTable(c.id, "status = 'completed'"));
  expect(completed.ids).toHaveLength(8);
});

test('the default page is 20 and limit=100 is allowed', async () => {
  const c = await newClient();
  await place(c, 21);
  const first = await list(c);
  expect(first.json.orders).toHaveLength(20);
  expect(first.json.next_cursor).toEqual(expect.any(String));
  const all = await list(c, '?limit=100');
  expect(all.json.orders.map((o: { id: string }) => o.id)).toEqual(await idsInTable(c.id));
  expect(all.json.next_cursor).toBeNull();
});

describe('cursors', () => {
  let c: Client;
  let cursor: string;
  beforeAll(async () => {
    c = await newClient();
    await place(c, 4);
    cursor = (await list(c, '?limit=2')).json.next_cursor;
    expect(cursor).toEqual(expect.any(String));
  });

  test('a cursor continues with any limit', async () => {
    const res = await list(c, `?limit=10&cursor=${cursor}`);
    expect(res.status).toBe(200);
    expect(res.json.orders.map((o: { id: string }) => o.id)).toEqual((await idsInTable(c.id)).slice(2));
  });

  test.each([
    ['not base64url', () => 'not*a*cursor'],
    ['not one of ours', () => Buffer.from('hello world').toString('base64url')],
    ['one character changed', () => cursor.slice(0, 10) + (cursor[10] === 'A' ? 'B' : 'A') + cursor.slice(11)],
    ['cut short', () => cursor.slice(0, -3)],
    ['an order ID swapped in', () => {
      const [v, s, us, , digits] = Buffer.from(cursor, 'base64url').toString().split('.');
      return Buffer.from([v, s, us, 'ord_000000000000', digits].join('.')).toString('base64url');
    }],
    ['a time swapped in', () => {
      const [v, , us, id, digits] = Buffer.from(cursor, 'base64url').toString().split('.');
      return Buffer.from([v, '2020-01-01T00:00:00', us, id, digits].join('.')).toString('base64url');
    }],
    ['too long', () => 'A'.repeat(401)],
  ])('a cursor %s: 400 naming the cursor, nothing listed', async (_what, make) => {
    const res = await list(c, `?cursor=${encodeURIComponent(make())}`);
    const problem = expectProblem(res, 400, 'invalid-request');
    expect(problem.errors).toEqual([expect.objectContaining({ path: 'cursor' })]);
  });

  test('a cursor sent with other filters, or by another client: 400', async () => {
    expectProblem(await list(c, `?status=pending&cursor=${cursor}`), 400, 'invalid-request');
    expectProblem(await list(c, `?created_after=2000-01-01T00:00:00Z&cursor=${cursor}`), 400, 'invalid-request');
    expectProblem(await list(await newClient(), `?cursor=${cursor}`), 400, 'invalid-request');
  });
});

describe('bad parameters: 400 problem+json naming them', () => {
  let c: Client;
  beforeAll(async () => {
    c = await newClient();
  });

  test.each([
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=-1', 'limit'],
    ['limit=1.5', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=', 'limit'],
    ['status=shipped', 'status'],
    ['status=PENDING', 'status'],
    ['created_after=yesterday', 'created_after'],
    ['created_after=2031-03-01', 'created_after'],
    ['created_before=2031-03-01T00:00:00', 'created_before'],
    ['created_after=2031-03-02T00:00:00Z&created_before=2031-03-01T00:00:00Z', 'created_after'],
    ['stauts=pending', 'stauts'],
    ['limit=5&limit=6', 'limit'],
  ])('?%s', async (query, param) => {
    const problem = expectProblem(await list(c, `?${query}`), 400, 'invalid-request');
    expect((problem.errors as { path: string }[]).map((e) => e.path)).toContain(param);
  });

  test('no key, or an unknown one: 401', async () => {
    expectProblem(await list(undefined), 401, 'unauthorized');
    expectProblem(await request(api.url, '/orders?limit=5', { apiKey: 'sk_unknown' }), 401, 'unauthorized');
  });
});

/** The nodes of a plan that make its rows, leaving out the subplans that make each row's columns (its items). */
function planNodes(node: Record<string, any>): Record<string, any>[] {
  const below = (node.Plans ?? []).filter((p: Record<string, any>) => p['Parent Relationship'] !== 'SubPlan');
  return [node, ...below.flatMap(planNodes)];
}

test('a page is one range scan of orders_client_created_idx, in index order (no sort), among many clients', async () => {
  const c = await newClient();
  await place(c, 3);
  // A table the planner must choose an index for: 60 other clients, 6,000 orders over a year.
  await ctx.db.query(`INSERT INTO api_clients (id, name, key_hash) SELECT 'cli_bulk' || g, $1 || g, md5($1 || g) FROM generate_series(1, 60) g`, [uniqueId('bulk')]);
  await ctx.db.query(
    `INSERT INTO orders (id, customer_id, amount_minor, currency, payment_token, shipping_address, client_id, workflow_id, created_at, status)
     SELECT 'ord_bulk' || g, 'cust', 100, 'EUR', 'tok_visa', '{}', 'cli_bulk' || (g % 60 + 1), 'order-ord_bulk' || g,
            now() - make_interval(mins => g * 90), (ARRAY['pending', 'completed', 'failed', 'cancelled'])[g % 4 + 1]
       FROM generate_series(1, 6000) g`,
  );
  await ctx.db.query('ANALYZE orders');
  for (const params of [
    ['cli_bulk7', null, null, null, null, null, 21],
    ['cli_bulk7', null, null, null, '2099-01-01T00:00:00.000000Z', 'ord_x', 21],
    // A status is checked on the rows the scan reads, in order, until the page is full.
    ['cli_bulk7', 'pending', '2000-01-01T00:00:00Z', '2100-01-01T00:00:00Z', '2099-01-01T00:00:00.000000Z', 'ord_x', 11],
  ]) {
    const { rows } = await ctx.db.query(`EXPLAIN (FORMAT JSON) ${LIST_ORDERS_SQL}`, params);
    const nodes = planNodes(rows[0]['QUERY PLAN'][0].Plan);
    const scan = nodes.find((n) => n['Relation Name'] === 'orders');
    expect(scan).toMatchObject({ 'Node Type': 'Index Scan', 'Index Name': 'orders_client_created_idx' });
    expect(scan!['Index Cond']).toContain('client_id =');
    // The cursor's position is where the scan starts, not a filter over what it read.
    if (params[4]) expect(scan!['Index Cond']).toMatch(/ROW\(created_at, id\) </);
    expect(nodes.map((n) => n['Node Type'])).not.toContain('Sort');
  }
  // Among them all, a client still lists its own.
  const res = await request(api.url, '/orders?limit=100', { apiKey: c.apiKey });
  expect(res.json.orders.map((o: { id: string }) => o.id)).toEqual(await idsInTable(c.id));
});

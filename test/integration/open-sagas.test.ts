/**
 * The open-saga gauges against real PostgreSQL: orders written with old
 * timestamps, read back from a real /metrics page, as Prometheus scrapes them.
 */
import type { Db } from '../../src/db/pool';
import { SagaMetrics, serveMetrics } from '../../src/observability/metrics';
import { OPEN_SAGA_STATUSES, registerOpenSagaMetrics } from '../../src/observability/open-sagas';
import { createTestSchema, uniqueId } from '../helpers/context';
import { promtoolCheckMetrics } from '../helpers/promtool';

let schema: Awaited<ReturnType<typeof createTestSchema>>;
let db: Db;
let server: { url: string; close(): Promise<void> };

beforeAll(async () => {
  schema = await createTestSchema('opensagas');
  db = schema.db;
  const metrics = new SagaMetrics({ role: 'api' });
  registerOpenSagaMetrics(metrics.registry, db, { timeoutMs: 500 });
  server = await serveMetrics(metrics, { port: 0 });
});
afterAll(async () => {
  await server?.close();
  await schema?.drop();
});

const scrape = async () => (await fetch(server.url)).text();

/** The value of one sample in Prometheus text, or undefined. */
function sample(text: string, name: string, status: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{status="${status}"} `));
  return line ? Number(line.split(' ').pop()) : undefined;
}
const gauges = (text: string) =>
  Object.fromEntries(
    OPEN_SAGA_STATUSES.map((s) => [s, { open: sample(text, 'sagaflow_orders_open', s), age: sample(text, 'sagaflow_orders_oldest_open_age_seconds', s) }]),
  );

/** An order row as the API writes it, with its clock set back. */
async function insertOrder(o: { status?: string; createdMinutesAgo: number; sagaStarted?: boolean }): Promise<string> {
  const id = uniqueId('ord');
  await db.query(
    `INSERT INTO orders (id, customer_id, amount_minor, currency, payment_token, shipping_address, status, workflow_id, created_at, updated_at, saga_started_at)
     VALUES ($1, 'c', 1000, 'EUR', 'tok_visa', '{}'::jsonb, $2, 'order-' || $1, now() - make_interval(mins => $3), now() - make_interval(mins => $3),
             CASE WHEN $4::boolean THEN now() - make_interval(mins => $3) END)`,
    [id, o.status ?? 'pending', o.createdMinutesAgo, o.sagaStarted ?? true],
  );
  return id;
}

/** A ledger row of the order's saga; state 'cancelled' is the tombstone a compensation leaves. */
async function ledgerRow(orderId: string, step: string, state: string, minutesAgo: number): Promise<void> {
  await db.query(
    `INSERT INTO step_ledger (key, workflow_id, step, state, created_at, updated_at)
     VALUES ('order-' || $1 || '/' || $2, 'order-' || $1, $2, $3, now() - make_interval(mins => $4), now() - make_interval(mins => $4))`,
    [orderId, step, state, minutesAgo],
  );
}

test('with no open order, every status is exported at 0 and the page passes promtool', async () => {
  const text = await scrape();
  for (const s of OPEN_SAGA_STATUSES) expect(gauges(text)[s]).toEqual({ open: 0, age: 0 });
  expect(text).toMatch(/^# TYPE sagaflow_orders_open gauge$/m);
  expect(text).toMatch(/^# TYPE sagaflow_orders_oldest_open_age_seconds gauge$/m);
  expect(await promtoolCheckMetrics(text)).toBe('');
});

test('open orders are counted by status with the age of the oldest; final ones are not counted', async () => {
  const oldRunning = await insertOrder({ createdMinutesAgo: 20 });
  await ledgerRow(oldRunning, 'reserve-inventory', 'completed', 19);
  await insertOrder({ createdMinutesAgo: 1 });
  await insertOrder({ createdMinutesAgo: 3, sagaStarted: false });
  // Created 30 minutes ago; its compensation began 12 minutes ago (the first tombstone), another 2 minutes ago.
  const compensating = await insertOrder({ createdMinutesAgo: 30 });
  await ledgerRow(compensating, 'reserve-inventory', 'cancelled', 12);
  await ledgerRow(compensating, 'charge-payment', 'cancelled', 2);
  await ledgerRow(compensating, 'create-shipment', 'failed', 13);
  // Ended orders, however old, are no open sagas; nor is a closed order whose ledger holds tombstones.
  await insertOrder({ status: 'completed', createdMinutesAgo: 120 });
  await insertOrder({ status: 'cancelled', createdMinutesAgo: 90 });
  const failed = await insertOrder({ status: 'failed', createdMinutesAgo: 60 });
  await ledgerRow(failed, 'reserve-inventory', 'cancelled', 59);

  const g = gauges(await scrape());
  expect({ running: g.running!.open, compensating: g.compensating!.open, not_started: g.not_started!.open }).toEqual({
    running: 2,
    compensating: 1,
    not_started: 1,
  });
  expect(g.running!.age).toBeGreaterThanOrEqual(20 * 60);
  expect(g.running!.age).toBeLessThan(20 * 60 + 30);
  expect(g.compensating!.age).toBeGreaterThanOrEqual(12 * 60);
  expect(g.compensating!.age).toBeLessThan(12 * 60 + 30);
  expect(g.not_started!.age).toBeGreaterThanOrEqual(3 * 60);
  expect(g.not_started!.age).toBeLessThan(3 * 60 + 30);

  // The old saga completes, the orphan gets its saga: the next scrape says so.
  await db.query(`UPDATE orders SET status = 'completed' WHERE id = $1`, [oldRunning]);
  await db.query(`UPDATE orders SET saga_started_at = now() WHERE saga_started_at IS NULL AND status = 'pending'`);
  const after = gauges(await scrape());
  expect({ running: after.running!.open, not_started: after.not_started!.open }).toEqual({ running: 2, not_started: 0 });
  expect(after.not_started!.age).toBe(0);
  // Now the oldest running order is the one created 3 minutes ago.
  expect(after.running!.age).toBeGreaterThanOrEqual(3 * 60);
  expect(after.running!.age).toBeLessThan(3 * 60 + 30);

  // Its last compensation closes the order: it is no longer open.
  await db.query(`UPDATE orders SET status = 'failed' WHERE id = $1`, [compensating]);
  expect(gauges(await scrape()).compensating).toEqual({ open: 0, age: 0 });
});

test('a database that does not answer leaves the last values, and the scrape answers within the timeout', async () => {
  const before = gauges(await scrape());
  // A new order the scrape cannot see while the table is locked.
  await insertOrder({ createdMinutesAgo: 0 });
  const locker = await db.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
    const started = Date.now();
    const during = gauges(await scrape());
    expect(Date.now() - started).toBeLessThan(2000);
    expect(during).toEqual(before);
  } finally {
    await locker.query('ROLLBACK');
    locker.release();
  }
  // Once the lock is gone the gauges are read again, the new order with them.
  const after = gauges(await scrape());
  expect(after.running!.open).toBe(before.running!.open! + 1);
});

/**
 * The books audit against real PostgreSQL. Clean books are written by the real
 * activities talking to the real payment provider and carrier, along every
 * path a saga takes (completed, pivot outage, declined card, cancel with a
 * charge whose answer was lost, cancel before the charge ran); each other test
 * corrupts one fact of those books and asserts the audit names it, from the
 * returned report, never from logs.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { createActivities, type SagaActivities } from '../../activities';
import type { Db } from '../../src/db/pool';
import { auditBooks as auditOwnBooks, type AuditOptions, type AuditReport } from '../../src/orders/audit';
import { reconcileOrder, reconcileSimulatedServices } from '../../dev/services/reconcile';
import { startCarrier } from '../../dev/services/carrier';
import type { RunningService } from '../../dev/services/http';
import { startPaymentProvider } from '../../dev/services/payment-provider';
import { migrateDevServices } from '../../dev/services/schema';
import { FailureType } from '../../workflows/order/failures';
import { orderWorkflowId } from '../../workflows/order/ids';
import { Step } from '../../workflows/order/steps';
import type { Address, Money, OrderInput, OrderItem } from '../../workflows/order/types';
import { runActivity } from '../helpers/activity-env';
import { addFault, createTestSchema, databaseUrl, seedInventory, uniqueId } from '../helpers/context';

// ---------------------------------------------------------------------------
// Books written by the activities, one schema and one pair of services per test

/** The audit as the dev stack runs it: sagaflow's own books, and the simulated services' reconciled against them. */
const auditBooks = (db: Db, opts: AuditOptions = {}): Promise<AuditReport> => auditOwnBooks(db, { ...opts, checks: [reconcileSimulatedServices] });

const run = runActivity;

const address: Address = { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' };
const money: Money = { amountMinor: 4_990, currency: 'EUR' };

interface Saga {
  order: OrderInput;
  id: string;
  key(step: string): string;
}

interface Books {
  db: Db;
  schema: string;
  acts: SagaActivities;
  payment: RunningService;
  carrier: RunningService;
  skuA: string;
  skuB: string;
  initialStock: Record<string, number>;
  completed: Saga;
  /** The carrier was down for the pivot: the label was never created, its void left a tombstone; the charge was refunded. */
  pivotOutage: Saga;
  declined: Saga;
  /** Cancelled while the charge's answer was lost: the provider charged, the local row stayed pending, the refund settled both. */
  cancelledInFlight: Saga;
  /** Cancelled before the charge ran: its refund left the provider's tombstone and no local row. */
  cancelledEarly: Saga;
  close(): Promise<void>;
}

const open: Books[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

function saga(items: OrderItem[], overrides: Partial<OrderInput> = {}): Saga {
  const id = uniqueId('o');
  const wf = orderWorkflowId(id);
  return {
    id,
    order: { orderId: id, customerId: 'cust-1', items, amount: money, paymentToken: 'tok_visa', shippingAddress: address, ...overrides },
    key: (step) => `${wf}/${step}`,
  };
}

async function failsWith(p: Promise<unknown>, type: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ type });
}

/** The forward steps a saga runs, in order, up to and including `until`. */
async function forward(acts: SagaActivities, s: Saga, until: string): Promise<void> {
  const { order, id } = s;
  const steps: [string, () => Promise<unknown>][] = [
    [Step.recordOrder, () => run(acts.recordOrder, { key: s.key(Step.recordOrder), order })],
    [Step.reserveInventory, () => run(acts.reserveInventory, { key: s.key(Step.reserveInventory), orderId: id, items: order.items })],
    [Step.fraudCheck, () => run(acts.checkFraud, { key: s.key(Step.fraudCheck), orderId: id, amount: order.amount, paymentToken: order.paymentToken })],
    [Step.chargePayment, () => run(acts.chargePayment, { key: s.key(Step.chargePayment), orderId: id, amount: order.amount, paymentToken: order.paymentToken })],
    [Step.createShipment, () => run(acts.createShipment, { key: s.key(Step.createShipment), orderId: id, address: order.shippingAddress, items: order.items })],
    [Step.completeOrder, () => run(acts.completeOrder, { key: s.key(Step.completeOrder), orderId: id })],
  ];
  for (const [step, call] of steps) {
    await call();
    if (step === until) return;
  }
}

/** The saga's compensations in reverse order, from `from` down to record-order's. */
async function compensate(acts: SagaActivities, s: Saga, from: string, status: 'cancelled' | 'failed'): Promise<void> {
  const undo = (step: string) => ({ key: `${s.key(step)}/undo`, forwardKey: s.key(step), orderId: s.id });
  const undos: [string, () => Promise<unknown>][] = [
    [Step.createShipment, () => run(acts.voidShipment, undo(Step.createShipment))],
    [Step.chargePayment, () => run(acts.refundPayment, undo(Step.chargePayment))],
    [Step.fraudCheck, () => run(acts.voidFraudCheck, undo(Step.fraudCheck))],
    [Step.reserveInventory, () => run(acts.releaseInventory, undo(Step.reserveInventory))],
    [Step.recordOrder, () => run(acts.cancelOrder, { ...undo(Step.recordOrder), status, reason: `${status} by the test` })],
  ];
  let started = false;
  for (const [step, call] of undos) {
    started ||= step === from;
    if (started) await call();
  }
}

async function cleanBooks(): Promise<Books> {
  const { db, schema, drop } = await createTestSchema('audit');
  const payment = await startPaymentProvider({ db });
  const carrier = await startCarrier({ db });
  const acts = createActivities({ db, paymentProviderUrl: payment.url, carrierUrl: carrier.url, providerTimeoutMs: 3000 });
  const skuA = uniqueId('sku-a');
  const skuB = uniqueId('sku-b');
  const initialStock = { [skuA]: 10, [skuB]: 5 };
  await seedInventory(db, initialStock);

  const completed = saga([{ sku: skuA, quantity: 2 }, { sku: skuB, quantity: 1 }]);
  await forward(acts, completed, Step.completeOrder);

  const pivotOutage = saga([{ sku: skuA, quantity: 1 }]);
  await forward(acts, pivotOutage, Step.chargePayment);
  // The carrier is down for the step's one attempt here, and back for its undo.
  await addFault(carrier.url, { kind: 'error', path: '/shipments', keyPrefix: pivotOutage.key(Step.createShipment), times: 1 });
  await failsWith(
    run(acts.createShipment, { key: pivotOutage.key(Step.createShipment), orderId: pivotOutage.id, address, items: pivotOutage.order.items }),
    FailureType.ProviderUnavailable,
  );
  await compensate(acts, pivotOutage, Step.createShipment, 'failed');

  const declined = saga([{ sku: skuA, quantity: 1 }], { paymentToken: 'tok_decline' });
  await forward(acts, declined, Step.fraudCheck);
  await failsWith(
    run(acts.chargePayment, { key: declined.key(Step.chargePayment), orderId: declined.id, amount: money, paymentToken: 'tok_decline' }),
    FailureType.PaymentDeclined,
  );
  await compensate(acts, declined, Step.chargePayment, 'failed');

  const cancelledInFlight = saga([{ sku: skuB, quantity: 2 }]);
  await forward(acts, cancelledInFlight, Step.fraudCheck);
  await addFault(payment.url, { kind: 'drop', path: '/charges', keyPrefix: cancelledInFlight.key(Step.chargePayment), times: 1 });
  await failsWith(
    run(acts.chargePayment, { key: cancelledInFlight.key(Step.chargePayment), orderId: cancelledInFlight.id, amount: money, paymentToken: 'tok_visa' }),
    FailureType.ProviderUnavailable,
  );
  await compensate(acts, cancelledInFlight, Step.chargePayment, 'cancelled');

  const cancelledEarly = saga([{ sku: skuA, quantity: 3 }]);
  await forward(acts, cancelledEarly, Step.fraudCheck);
  await compensate(acts, cancelledEarly, Step.chargePayment, 'cancelled');

  const books: Books = {
    db, schema, acts, payment, carrier, skuA, skuB, initialStock,
    completed, pivotOutage, declined, cancelledInFlight, cancelledEarly,
    async close() {
      await payment.close();
      await carrier.close();
      await drop();
    },
  };
  open.push(books);
  return books;
}

async function exec(db: Db, sql: string, params: unknown[]): Promise<void> {
  const res = await db.query(sql, params);
  // Each corruption must hit the row it means to, or the test proves nothing.
  expect(res.rowCount).toBe(1);
}

/** Every violation is about `subject`, and each pattern matches exactly one of them. */
function expectViolations(report: AuditReport, subject: string, patterns: RegExp[]): void {
  expect(report.violations).toHaveLength(patterns.length);
  for (const v of report.violations) expect(v.startsWith(`${subject}: `)).toBe(true);
  for (const p of patterns) expect(report.violations.filter((v) => p.test(v))).toHaveLength(1);
}

// ---------------------------------------------------------------------------
// Clean books

describe('clean books', () => {
  test('every saga path, written by the real activities and services, gives zero violations, settled and with initial stock', async () => {
    const b = await cleanBooks();
    // The books really went down the paths named, or this test proves less than it says.
    const { rows } = await b.db.query<{ id: string; status: string; charge: string | null; payment: string | null; label: string | null; shipment: string | null }>(
      `SELECT o.id, o.status, c.status AS charge, p.status AS payment, cs.status AS label, sh.status AS shipment
         FROM orders o
         LEFT JOIN provider_charges c ON c.idempotency_key = 'order-' || o.id || '/charge-payment'
         LEFT JOIN payments p ON p.idempotency_key = 'order-' || o.id || '/charge-payment'
         LEFT JOIN carrier_shipments cs ON cs.idempotency_key = 'order-' || o.id || '/create-shipment'
         LEFT JOIN shipments sh ON sh.idempotency_key = 'order-' || o.id || '/create-shipment'`,
    );
    const byId = Object.fromEntries(rows.map(({ id, ...r }) => [id, r]));
    expect(byId).toEqual({
      [b.completed.id]: { status: 'completed', charge: 'succeeded', payment: 'captured', label: 'created', shipment: 'created' },
      // The void learns the label's fate by asking for it again under its key: made now, and voided.
      [b.pivotOutage.id]: { status: 'failed', charge: 'refunded', payment: 'refunded', label: 'voided', shipment: 'voided' },
      [b.declined.id]: { status: 'failed', charge: 'declined', payment: 'declined', label: null, shipment: null },
      [b.cancelledInFlight.id]: { status: 'cancelled', charge: 'refunded', payment: 'refunded', label: null, shipment: null },
      [b.cancelledEarly.id]: { status: 'cancelled', charge: null, payment: null, label: null, shipment: null },
    });

    const report = await auditBooks(b.db, { settled: true, initialStock: b.initialStock });
    expect(report).toEqual({
      orders: 5,
      byStatus: { completed: 1, cancelled: 2, failed: 2, pending: 0 },
      violations: [],
    });
    expect(await auditBooks(b.db)).toEqual(report);
    expect(await auditBooks(b.db, { orderIds: [b.completed.id, b.declined.id], settled: true })).toEqual({
      orders: 2,
      byStatus: { completed: 1, cancelled: 0, failed: 1, pending: 0 },
      violations: [],
    });
  });

  test('an order in flight is no violation until the system is declared settled', async () => {
    const b = await cleanBooks();
    // The charge's answer is lost: the provider charged, the local record and the ledger row stay pending.
    const s = saga([{ sku: b.skuB, quantity: 1 }]);
    await forward(b.acts, s, Step.fraudCheck);
    await addFault(b.payment.url, { kind: 'drop', path: '/charges', keyPrefix: s.key(Step.chargePayment), times: 1 });
    await failsWith(
      run(b.acts.chargePayment, { key: s.key(Step.chargePayment), orderId: s.id, amount: money, paymentToken: 'tok_visa' }),
      FailureType.ProviderUnavailable,
    );

    const live = await auditBooks(b.db, { initialStock: b.initialStock });
    expect(live).toMatchObject({ orders: 6, byStatus: { pending: 1 }, violations: [] });

    const settled = await auditBooks(b.db, { settled: true, initialStock: b.initialStock });
    expectViolations(settled, s.id, [
      /: still pending$/,
      new RegExp(`: ledger row ${s.key(Step.chargePayment)} still pending$`),
      /: local payment still pending \(/,
    ]);
  });
});

// ---------------------------------------------------------------------------
// One corrupted fact, one violation class

describe('corrupted books', () => {
  test('money taken for a cancelled order', async () => {
    const b = await cleanBooks();
    const s = b.cancelledInFlight;
    await exec(b.db, `UPDATE provider_charges SET status = 'succeeded' WHERE idempotency_key = $1`, [s.key(Step.chargePayment)]);

    const report = await auditBooks(b.db);
    expectViolations(report, s.id, [
      /: money taken for a cancelled order: live charge ch_\w+ of 4990 EUR$/,
      /: local payment is refunded, but the charge ch_\w+ succeeded \(/,
    ]);
  });

  test('a live label for a failed order', async () => {
    const b = await cleanBooks();
    const s = b.pivotOutage;
    await exec(
      b.db,
      `UPDATE carrier_shipments SET status = 'created', id = 'shp_forged', tracking_number = 'TRK000000000000'
        WHERE idempotency_key = $1`,
      [s.key(Step.createShipment)],
    );

    const report = await auditBooks(b.db);
    expectViolations(report, s.id, [/: live label shp_forged for a failed order$/, /: local shipment is voided, but the label shp_forged created \(/]);
  });

  test('stock still held for a dead order (its release never ran)', async () => {
    const b = await cleanBooks();
    const s = b.declined;
    // The hold as reserveInventory left it: the reservation and the counter together, so only the order is wrong.
    await exec(b.db, `UPDATE reservations SET status = 'held' WHERE order_id = $1 AND sku = $2`, [s.id, b.skuA]);
    await exec(b.db, `UPDATE inventory SET reserved = reserved + 1 WHERE sku = $1`, [b.skuA]);

    expectViolations(await auditBooks(b.db), s.id, [/: stock held \(1 units\) for a failed order$/]);
  });

  test('the reserved counter drifted from the held reservations', async () => {
    const b = await cleanBooks();
    await exec(b.db, `UPDATE inventory SET reserved = reserved + 1 WHERE sku = $1`, [b.skuB]);

    const report = await auditBooks(b.db, { orderIds: [b.completed.id] });
    // Global stock checks run whatever orders the audit is restricted to.
    expectViolations(report, b.skuB, [/: reserved 1, but held reservations sum to 0$/]);
  });

  test('a provider charge without a local payment row', async () => {
    const b = await cleanBooks();
    const s = b.completed;
    await exec(b.db, `DELETE FROM payments WHERE idempotency_key = $1`, [s.key(Step.chargePayment)]);

    expectViolations(await auditBooks(b.db), s.id, [
      /: completed, but its local payment is missing, not captured$/,
      /: charge ch_\w+ succeeded has no local payment record \(/,
    ]);
  });

  test('a provider charge whose key belongs to no order; an audit restricted to other orders does not see it', async () => {
    const b = await cleanBooks();
    const key = `${orderWorkflowId('ghost')}/${Step.chargePayment}`;
    await exec(
      b.db,
      `INSERT INTO provider_charges (idempotency_key, id, amount_minor, currency, source, status)
       VALUES ($1, 'ch_ghost', 100, 'EUR', 'tok_visa', 'succeeded')`,
      [key],
    );

    expectViolations(await auditBooks(b.db), key, [/: charge ch_ghost succeeded belongs to no order$/]);
    expect((await auditBooks(b.db, { orderIds: [b.completed.id] })).violations).toEqual([]);
    expect((await auditBooks(b.db, { orderIds: ['ghost'] })).violations).toEqual([
      'ghost: no such order',
      `${key}: charge ch_ghost succeeded belongs to no order`,
    ]);
  });

  test('a pending order, with settled', async () => {
    const b = await cleanBooks();
    const s = saga([{ sku: b.skuA, quantity: 1 }]);
    await forward(b.acts, s, Step.recordOrder);

    expect((await auditBooks(b.db)).violations).toEqual([]);
    const report = await auditBooks(b.db, { settled: true });
    expect(report.byStatus).toEqual({ completed: 1, cancelled: 2, failed: 2, pending: 1 });
    expect(report.violations).toEqual([`${s.id}: still pending`]);
  });

  test('a pending ledger row, with settled', async () => {
    const b = await cleanBooks();
    const s = b.cancelledEarly;
    // A compensation that claimed its key and never finished, as runExternalUndo leaves one that died mid-call.
    const undoKey = `${s.key(Step.chargePayment)}/undo`;
    await exec(b.db, `UPDATE step_ledger SET state = 'pending' WHERE key = $1`, [undoKey]);

    const report = await auditBooks(b.db, { settled: true });
    expectViolations(report, s.id, [
      new RegExp(`: ledger row ${undoKey} still pending$`),
      /: cancelled order, but compensations did not finish: charge-payment\/undo=pending$/,
    ]);
    // A compensation left unfinished under a closed order is wrong whether or not the system has settled.
    expectViolations(await auditBooks(b.db), s.id, [/compensations did not finish/]);
  });

  test('a tombstone that came back to life: a compensated step the ledger shows completed', async () => {
    const b = await cleanBooks();
    const s = b.cancelledEarly;
    await exec(b.db, `UPDATE step_ledger SET state = 'completed' WHERE key = $1`, [s.key(Step.chargePayment)]);

    expectViolations(await auditBooks(b.db), s.id, [
      /: compensation order-.+\/charge-payment\/undo is completed, but its forward step is completed, not a cancelled tombstone$/,
      /: cancelled order, but ledger steps were not compensated: charge-payment=completed$/,
    ]);
  });

  test('stock not conserved against the initial stock', async () => {
    const b = await cleanBooks();
    await exec(b.db, `UPDATE inventory SET on_hand = on_hand + 1 WHERE sku = $1`, [b.skuA]);

    // More stock on the shelf breaks no counter: only the known starting stock shows it appeared from nowhere.
    expect((await auditBooks(b.db)).violations).toEqual([]);
    expectViolations(await auditBooks(b.db, { initialStock: b.initialStock }), b.skuA, [
      /: stock not conserved: on hand 9 \+ consumed 2 = 11, started with 10$/,
    ]);
  });

  test('a completed order whose stock never left the shelf', async () => {
    const b = await cleanBooks();
    const s = b.completed;
    // As if complete-order had not consumed one line: held again, counter and shelf alike.
    await exec(b.db, `UPDATE reservations SET status = 'held' WHERE order_id = $1 AND sku = $2`, [s.id, b.skuB]);
    await exec(b.db, `UPDATE inventory SET reserved = reserved + 1, on_hand = on_hand + 1 WHERE sku = $1`, [b.skuB]);

    expectViolations(await auditBooks(b.db, { initialStock: b.initialStock }), s.id, [
      /: completed, but 1 item line\(s\) are not consumed reservations of the ordered quantity \(held 1, consumed 2 units\)$/,
    ]);
  });

  test('reconcileOrder reports the figures and the audit lines of one order', async () => {
    const b = await cleanBooks();
    expect(await reconcileOrder(b.db, b.completed.id)).toEqual({
      orderId: b.completed.id,
      status: 'completed',
      amountMinor: 4990,
      netChargedMinor: 4990,
      activeShipments: 1,
      heldUnits: 0,
      consumedUnits: 3,
      problems: [],
    });
    await exec(b.db, `UPDATE carrier_shipments SET status = 'voided' WHERE idempotency_key = $1`, [b.completed.key(Step.createShipment)]);
    const books = await reconcileOrder(b.db, b.completed.id);
    expect(books.activeShipments).toBe(0);
    expect(books.problems).toEqual([
      expect.stringMatching(/: completed, but the carrier has no live label for it \(label voided\)$/),
      expect.stringMatching(/: local shipment is created, but the label shp_\w+ voided \(/),
    ]);
  });
});

// ---------------------------------------------------------------------------
// Scale: a handful of set-based queries, whatever the number of orders

test('20 000 completed orders are audited in seconds, with zero violations', async () => {
  const { db, drop } = await createTestSchema('auditbulk');
  try {
    await migrateDevServices(db);
    const n = 20_000;
    // The rows exactly as the six steps of a completed saga leave them, written in bulk.
    await db.query(
      `WITH g AS (SELECT i, 'bulk-' || i AS id, 'order-bulk-' || i AS wf FROM generate_series(1, $1::int) AS i),
       inv AS (INSERT INTO inventory (sku, on_hand, reserved) VALUES ('bulk-sku', 10, 0) RETURNING sku),
       -- Through a record, so the columns later migrations add (and require) are filled when they exist.
       o AS (INSERT INTO orders
             SELECT (jsonb_populate_record(NULL::orders, jsonb_build_object(
                      'id', id, 'customer_id', 'cust', 'amount_minor', 1000, 'currency', 'EUR', 'payment_token', 'tok_visa',
                      'shipping_address', '{}'::jsonb, 'status', 'completed', 'workflow_id', wf,
                      'created_at', now(), 'updated_at', now(), 'saga_started_at', now()))).*
               FROM g RETURNING id),
       it AS (INSERT INTO order_items (order_id, sku, quantity) SELECT id, 'bulk-sku', 1 FROM g RETURNING order_id),
       fc AS (INSERT INTO fraud_checks (order_id, decision, score, reasons, status)
              SELECT id, 'approved', 10, '[]', 'active' FROM g RETURNING order_id),
       pc AS (INSERT INTO provider_charges (idempotency_key, id, amount_minor, currency, source, status)
              SELECT wf || '/charge-payment', 'ch_' || i, 1000, 'EUR', 'tok_visa', 'succeeded' FROM g RETURNING id),
       p AS (INSERT INTO payments (idempotency_key, order_id, amount_minor, currency, status, provider_charge_id)
             SELECT wf || '/charge-payment', id, 1000, 'EUR', 'captured', 'ch_' || i FROM g RETURNING order_id),
       cs AS (INSERT INTO carrier_shipments (idempotency_key, id, tracking_number, status)
              SELECT wf || '/create-shipment', 'shp_' || i, 'TRK' || i, 'created' FROM g RETURNING id),
       sh AS (INSERT INTO shipments (idempotency_key, order_id, status, carrier_shipment_id, tracking_number)
              SELECT wf || '/create-shipment', id, 'created', 'shp_' || i, 'TRK' || i FROM g RETURNING order_id),
       l AS (INSERT INTO step_ledger (key, workflow_id, step, state)
             SELECT g.wf || '/' || s.step, g.wf, s.step, 'completed'
               FROM g, unnest($2::text[]) AS s (step) RETURNING key)
       SELECT (SELECT count(*) FROM o) AS orders`,
      [n, [Step.recordOrder, Step.reserveInventory, Step.fraudCheck, Step.chargePayment, Step.createShipment, Step.completeOrder]],
    );
    // The reservations reference the SKU, so they follow its insert.
    await db.query(
      `INSERT INTO reservations (order_id, sku, quantity, status) SELECT 'bulk-' || i, 'bulk-sku', 1, 'consumed' FROM generate_series(1, $1::int) AS i`,
      [n],
    );
    await db.query('ANALYZE orders, order_items, reservations, inventory, payments, provider_charges, shipments, carrier_shipments, step_ledger, fraud_checks');

    const started = Date.now();
    const report = await auditBooks(db, { settled: true, initialStock: { 'bulk-sku': 10 + n } });
    const elapsed = Date.now() - started;
    expect(report).toEqual({ orders: n, byStatus: { completed: n, cancelled: 0, failed: 0, pending: 0 }, violations: [] });
    expect(elapsed).toBeLessThan(15_000);

    // And one corrupted order among them is still found by name.
    await exec(db, `UPDATE payments SET status = 'refunded' WHERE order_id = $1`, ['bulk-777']);
    const again = await auditBooks(db, { settled: true });
    expect(again.violations).toHaveLength(2);
    expect(again.violations.every((v) => v.startsWith('bulk-777: '))).toBe(true);
  } finally {
    await drop();
  }
});

// ---------------------------------------------------------------------------
// The CLI, as a process

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const root = path.resolve(__dirname, '../..');
  return new Promise((resolve) => {
    execFile(
      'npx',
      ['ts-node', '--transpile-only', 'bin/audit.ts', ...args],
      { cwd: root, env, timeout: 90_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

test('npm run audit: exit 0 and a summary on clean books, exit 1 and the line on corrupted ones', async () => {
  const b = await cleanBooks();
  const env = { ...process.env, DATABASE_URL: databaseUrl() };

  const clean = await cli(['--schema', b.schema, '--settled'], env);
  expect(clean).toMatchObject({ code: 0, stdout: 'audit: 5 orders (1 completed, 2 cancelled, 2 failed, 0 pending), 0 violations\n' });

  await exec(b.db, `UPDATE inventory SET reserved = reserved + 1 WHERE sku = $1`, [b.skuB]);
  const bad = await cli(['--schema', b.schema, '--settled'], env);
  expect(bad.code).toBe(1);
  expect(bad.stdout.split('\n')).toEqual([
    `${b.skuB}: reserved 1, but held reservations sum to 0`,
    'audit: 5 orders (1 completed, 2 cancelled, 2 failed, 0 pending), 1 violation',
    '',
  ]);

  const json = await cli(['--schema', b.schema, '--json'], env);
  expect(json.code).toBe(1);
  expect(JSON.parse(json.stdout)).toEqual({
    settled: false,
    orders: 5,
    byStatus: { completed: 1, cancelled: 2, failed: 2, pending: 0 },
    violations: [`${b.skuB}: reserved 1, but held reservations sum to 0`],
  });

  const { DATABASE_URL: _omit, ...noDb } = env;
  const missing = await cli(['--schema', b.schema], noDb);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toMatch(/DATABASE_URL: required/);
});

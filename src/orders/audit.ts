import type { Db, Tx } from '../db/pool';
import { inTransaction } from '../db/pool';
import { orderWorkflowId } from '../../workflows/order/ids';
import { Step } from '../../workflows/order/steps';

/**
 * The books audit: checks from sagaflow's own rows (orders, stock, the local
 * payment and shipment records, fraud checks, the step ledger) that they say
 * what the saga promises. It reads no other system's tables, so it runs on any
 * database `migrate` built; a deployment that can read a payment provider's or
 * a carrier's books plugs their reconciliation in as `checks` (the dev stack
 * and the chaos soak do, with the simulated services' own: dev/services/reconcile.ts).
 * Every check is an invariant the code guarantees at every committed instant,
 * or, with `settled`, once nothing is in flight; an audit that flags correct
 * books is as useless as one that misses bad ones.
 *
 * - completed order: its local payment is captured for its amount and currency,
 *   its local shipment created; its reservations are its items, all consumed;
 *   its fraud check (if any) not voided; its forward ledger rows all completed
 *   (record, reserve, charge, ship, complete; fraud-check is optional), and no
 *   compensation ran.
 * - cancelled or failed order (closed by the last compensation): no captured
 *   payment, no created local shipment, no held or consumed stock, no active
 *   fraud check; every forward ledger row it has is a cancelled tombstone and
 *   every compensation row completed. A step whose failed compensation an
 *   operator settled by hand (`sagaflow sagas resolve`) is accounted for: what
 *   it left done, and its undo row still pending, are not violations.
 * - pending order: in flight, not checked; with `settled`, a violation.
 * - each local payment and shipment record: it is filed under the order whose
 *   step key it has, and that order exists (with `orderIds`, records of those
 *   orders, or under their workflow IDs, are looked at); a pending record with
 *   no step or undo in flight for its key is a violation, and with `settled`
 *   any pending record.
 * - ledger: a compensation row exists only beside its forward row as a
 *   cancelled tombstone, and is pending or completed; a tombstone has its
 *   compensation's row; with `settled`, no row is pending.
 * - stock, always over every SKU: reserved = the held reservations, on_hand >=
 *   reserved >= 0, and with `initialStock`, on_hand + consumed = the start;
 *   without `orderIds`, no held or consumed reservation belongs to no order.
 *
 * All queries read one REPEATABLE READ snapshot (the plugged-in checks too), so
 * a system under load is audited as of a single instant, and each is set-based
 * and returns only what is wrong: a handful of round trips whatever the number of orders.
 */

/** What a plugged-in check is asked about: the orders in scope (null: all) and whether the system has settled. */
export interface AuditScope {
  orderIds: string[] | null;
  settled: boolean;
}

/**
 * A check of books the audit does not own, run in the audit's snapshot: it
 * returns one line per violation, `<order id or key>: <problem>`.
 */
export type AuditCheck = (tx: Tx, scope: AuditScope) => Promise<string[]>;

export interface AuditOptions {
  /** When true the system has settled: a pending order, a pending ledger row, a pending payment/shipment row is a violation. */
  settled?: boolean;
  /** Only these orders (default: all orders). Global stock checks still run. */
  orderIds?: string[];
  /** Expected on_hand + consumed per SKU from a known starting stock, to prove stock is conserved (optional). */
  initialStock?: Record<string, number>;
  /** Checks of other books (a provider's, a carrier's) against these, in the same snapshot. */
  checks?: readonly AuditCheck[];
}

export interface AuditReport {
  orders: number;
  byStatus: Record<string, number>; // e.g. { completed: 10, cancelled: 3, failed: 2, pending: 0 }
  violations: string[]; // one human-readable line each, starting with the order id or sku it concerns
}

const ORDER_STATUSES = ['completed', 'cancelled', 'failed', 'pending'] as const;

/** Forward steps every completed order went through; fraud-check is optional (sagas older than its patch skip it). */
const COMPLETED_ORDER_STEPS: readonly string[] = [
  Step.recordOrder,
  Step.reserveInventory,
  Step.chargePayment,
  Step.createShipment,
  Step.completeOrder,
];

/** `order-`: an order's workflow ID is this prefix and the order ID; its step keys are `<workflowId>/<step>`. */
export const WF_PREFIX = orderWorkflowId('');
/** A regular expression whose first group is the order a step key belongs to (for a service's key, no `/undo`). */
export const ORDER_OF_STEP_KEY = `^${WF_PREFIX.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(.*)/[^/]+$`;

export async function auditBooks(db: Db, opts: AuditOptions = {}): Promise<AuditReport> {
  return inTransaction(db, async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    return audit(tx, opts, { stock: true });
  });
}

/** `audit: 1234 orders (1000 completed, 200 cancelled, 34 failed, 0 pending), 0 violations` */
export function auditSummary(r: AuditReport): string {
  const counts = Object.entries(r.byStatus).map(([status, n]) => `${n} ${status}`);
  const n = r.violations.length;
  return `audit: ${r.orders} orders (${counts.join(', ')}), ${n} violation${n === 1 ? '' : 's'}`;
}

/** The audit in the caller's REPEATABLE READ transaction; `stock: false` leaves the global stock checks out. */
export async function audit(tx: Tx, opts: AuditOptions, what: { stock: boolean }): Promise<AuditReport> {
  const settled = opts.settled === true;
  const ids = opts.orderIds ? [...new Set(opts.orderIds)] : null;
  const violations: string[] = [];
  const add = (subject: string, problem: string) => violations.push(`${subject}: ${problem}`);
  // Hash joins and aggregates over every order fit in memory instead of spilling to disk.
  await tx.query(`SET LOCAL work_mem = '64MB'`);

  const { orders, byStatus, missing } = await orderCounts(tx, ids);
  for (const id of missing) add(id, 'no such order');
  for (const o of await orderProblems(tx, ids, settled)) describeOrder(o, (p) => add(o.id, p));
  for (const kind of [PAYMENTS, SHIPMENTS]) {
    for (const p of await recordProblems(tx, ids, settled, kind)) describeRecord(p, kind, settled, add);
  }
  for (const row of await ledgerFaults(tx, ids, settled)) checkLedgerRow(row, add);
  if (what.stock) {
    for (const row of await stockFaults(tx, opts.initialStock ?? {})) checkStock(row, add);
    if (!ids) for (const r of await orphanReservations(tx)) add(r.order_id, `${r.status} reservation of ${r.quantity} ${r.sku}, but no such order`);
  }
  for (const check of opts.checks ?? []) violations.push(...(await check(tx, { orderIds: ids, settled })));

  violations.sort();
  return { orders, byStatus, violations };
}

async function orderCounts(tx: Tx, ids: string[] | null): Promise<{ orders: number; byStatus: Record<string, number>; missing: string[] }> {
  const res = await tx.query<{ status: string | null; n: number; missing: string[] | null }>(
    `SELECT status, count(*)::int AS n, NULL::text[] AS missing
       FROM orders WHERE $1::text[] IS NULL OR id = ANY ($1::text[]) GROUP BY status
     UNION ALL
     SELECT NULL, 0, array_agg(x ORDER BY x) FROM unnest($1::text[]) AS x
      WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = x)`,
    [ids],
  );
  const byStatus: Record<string, number> = Object.fromEntries(ORDER_STATUSES.map((s) => [s, 0]));
  let orders = 0;
  let missing: string[] = [];
  for (const r of res.rows) {
    if (r.status === null) missing = r.missing ?? [];
    else {
      byStatus[r.status] = r.n;
      orders += r.n;
    }
  }
  return { orders, byStatus, missing };
}

// ---------------------------------------------------------------------------
// Orders: what each order's status promises about every system's rows. The
// query decides (one code per broken promise) and returns only orders with a
// problem, with the facts to describe it; describeOrder words them.

interface OrderProblems {
  id: string;
  status: string;
  problems: string[];
  amount_minor: string;
  currency: string;
  payment_status: string | null;
  payment_amount: string | null;
  payment_currency: string | null;
  shipment_status: string | null;
  held: number;
  consumed: number;
  unshipped_lines: number;
  /** `step=state` of the order's forward ledger rows, and of its undo rows (`step/undo=state`). */
  forward: string[];
  undo: string[];
}

async function orderProblems(tx: Tx, ids: string[] | null, settled: boolean): Promise<OrderProblems[]> {
  const res = await tx.query<OrderProblems>(
    `WITH scope AS (
       SELECT o.id, o.status, o.amount_minor, o.currency, $4 || o.id AS wf,
              -- Steps whose failed compensation an operator settled by hand (sagaflow sagas resolve):
              -- what they left done is accounted for.
              coalesce((SELECT array_agg(e ->> 'step') FROM jsonb_array_elements(o.compensation_failures) e
                         WHERE e -> 'resolution' ->> 'how' = 'manual'), '{}') AS resolved
         FROM orders o
        WHERE ($1::text[] IS NULL OR o.id = ANY ($1::text[])) AND (o.status <> 'pending' OR $6::boolean)),
     stock AS (
       SELECT coalesce(i.order_id, r.order_id) AS order_id,
              coalesce(sum(r.quantity) FILTER (WHERE r.status = 'held'), 0)::int AS held,
              coalesce(sum(r.quantity) FILTER (WHERE r.status = 'consumed'), 0)::int AS consumed,
              -- Lines where the items and the reservations differ, or the reservation is not consumed.
              count(*) FILTER (WHERE i.order_id IS NULL OR r.order_id IS NULL
                                  OR r.quantity <> i.quantity OR r.status <> 'consumed')::int AS unshipped_lines
         FROM (SELECT i.* FROM order_items i JOIN scope s ON s.id = i.order_id) i
         FULL JOIN (SELECT r.* FROM reservations r JOIN scope s ON s.id = r.order_id) r
           ON r.order_id = i.order_id AND r.sku = i.sku
        GROUP BY 1),
     ledger AS (
       SELECT workflow_id,
              count(*) FILTER (WHERE kind = 'forward' AND state <> 'completed') AS forward_not_completed,
              count(*) FILTER (WHERE kind = 'forward' AND state <> 'cancelled') AS forward_not_cancelled,
              count(*) FILTER (WHERE kind = 'forward' AND state = 'completed' AND step = ANY ($5::text[])) AS required_completed,
              count(*) FILTER (WHERE kind = 'undo') AS undos,
              count(*) FILTER (WHERE kind = 'undo' AND state <> 'completed' AND NOT step = ANY (resolved)) AS undos_unfinished
         FROM (SELECT l.workflow_id, l.step, l.state, s.resolved,
                      CASE l.key WHEN s.wf || '/' || l.step THEN 'forward' WHEN s.wf || '/' || l.step || '/undo' THEN 'undo' END AS kind
                 FROM step_ledger l JOIN scope s ON s.wf = l.workflow_id) l
        GROUP BY workflow_id),
     facts AS (
       SELECT s.id, s.wf, s.status, s.amount_minor, s.currency, s.resolved,
              p.status AS payment_status, p.amount_minor AS payment_amount, p.currency AS payment_currency,
              sh.status AS shipment_status, f.status AS fraud_status,
              coalesce(st.held, 0) AS held, coalesce(st.consumed, 0) AS consumed, coalesce(st.unshipped_lines, 0) AS unshipped_lines,
              coalesce(lg.forward_not_completed, 0) AS forward_not_completed,
              coalesce(lg.forward_not_cancelled, 0) AS forward_not_cancelled,
              coalesce(lg.required_completed, 0) AS required_completed,
              coalesce(lg.undos, 0) AS undos, coalesce(lg.undos_unfinished, 0) AS undos_unfinished
         FROM scope s
         LEFT JOIN payments p ON p.idempotency_key = s.wf || '/' || $2
         LEFT JOIN shipments sh ON sh.idempotency_key = s.wf || '/' || $3
         LEFT JOIN fraud_checks f ON f.order_id = s.id
         LEFT JOIN stock st ON st.order_id = s.id
         LEFT JOIN ledger lg ON lg.workflow_id = s.wf),
     judged AS (
       SELECT facts.*, array_remove(CASE
         WHEN status = 'pending' THEN ARRAY['pending']
         -- Paid once, shipped once, its stock gone from the shelf, every step done and nothing undone.
         WHEN status = 'completed' THEN ARRAY[
           CASE WHEN payment_status IS DISTINCT FROM 'captured' THEN 'payment-not-captured' END,
           CASE WHEN payment_status = 'captured' AND (payment_amount <> amount_minor OR payment_currency <> currency) THEN 'payment-amount' END,
           CASE WHEN shipment_status IS DISTINCT FROM 'created' THEN 'shipment-not-created' END,
           CASE WHEN unshipped_lines > 0 THEN 'stock-not-consumed' END,
           -- Only a compensation voids an assessment, and a completed order was never compensated.
           CASE WHEN fraud_status = 'voided' THEN 'fraud-voided' END,
           CASE WHEN forward_not_completed > 0 OR required_completed < cardinality($5::text[]) THEN 'steps-not-completed' END,
           CASE WHEN undos > 0 THEN 'compensated' END]
         -- Closed by the record step's compensation, which runs last, after every other one:
         -- nothing the saga took may still be held, and every step it began is tombstoned.
         ELSE ARRAY[
           CASE WHEN payment_status = 'captured' AND NOT $2 = ANY (resolved) THEN 'payment-captured' END,
           CASE WHEN shipment_status = 'created' AND NOT $3 = ANY (resolved) THEN 'shipment-created' END,
           CASE WHEN held > 0 AND NOT $7 = ANY (resolved) THEN 'stock-held' END,
           CASE WHEN consumed > 0 AND NOT $7 = ANY (resolved) THEN 'stock-consumed' END,
           CASE WHEN fraud_status = 'active' AND NOT $8 = ANY (resolved) THEN 'fraud-active' END,
           CASE WHEN forward_not_cancelled > 0 THEN 'steps-not-compensated' END,
           CASE WHEN undos_unfinished > 0 THEN 'compensations-unfinished' END]
       END, NULL) AS problems
         FROM facts)
     SELECT j.id, j.status, j.problems, j.amount_minor::text AS amount_minor, j.currency,
            j.payment_status, j.payment_amount::text AS payment_amount, j.payment_currency, j.shipment_status, j.held, j.consumed, j.unshipped_lines,
            coalesce(array_agg(l.step || '=' || l.state ORDER BY l.step) FILTER (WHERE l.key = j.wf || '/' || l.step), '{}') AS forward,
            coalesce(array_agg(l.step || '/undo=' || l.state ORDER BY l.step)
                       FILTER (WHERE l.key = j.wf || '/' || l.step || '/undo'), '{}') AS undo
       FROM judged j LEFT JOIN step_ledger l ON l.workflow_id = j.wf
      WHERE cardinality(j.problems) > 0
      GROUP BY j.id, j.status, j.problems, j.amount_minor, j.currency, j.payment_status, j.payment_amount,
               j.payment_currency, j.shipment_status, j.held, j.consumed, j.unshipped_lines`,
    [ids, Step.chargePayment, Step.createShipment, WF_PREFIX, COMPLETED_ORDER_STEPS, settled, Step.reserveInventory, Step.fraudCheck],
  );
  return res.rows;
}

function describeOrder(o: OrderProblems, add: (problem: string) => void): void {
  const money = (amount: string | null, currency: string | null) => `${amount ?? '?'} ${currency ?? '?'}`;
  const dead = `${o.status} order`;
  const missingSteps = COMPLETED_ORDER_STEPS.filter((s) => !o.forward.some((f) => f.startsWith(`${s}=`)));
  const notCompleted = [...o.forward.filter((f) => !f.endsWith('=completed')), ...missingSteps.map((s) => `${s}=missing`)];
  const words: Record<string, () => string> = {
    pending: () => 'still pending',
    'payment-not-captured': () => `completed, but its local payment is ${o.payment_status ?? 'missing'}, not captured`,
    'payment-amount': () => `completed for ${money(o.amount_minor, o.currency)}, but its local payment captured ${money(o.payment_amount, o.payment_currency)}`,
    'shipment-not-created': () => `completed, but its local shipment is ${o.shipment_status ?? 'missing'}, not created`,
    'stock-not-consumed': () =>
      `completed, but ${o.unshipped_lines} item line(s) are not consumed reservations of the ordered quantity (held ${o.held}, consumed ${o.consumed} units)`,
    'fraud-voided': () => 'completed, but its fraud check was voided',
    'steps-not-completed': () => `completed, but ledger steps are not all completed: ${notCompleted.join(', ')}`,
    compensated: () => `completed, but compensations ran: ${o.undo.join(', ')}`,
    'payment-captured': () => `${dead}, but its local payment is still captured`,
    'shipment-created': () => `${dead}, but its local shipment is still created`,
    'stock-held': () => `stock held (${o.held} units) for a ${dead}`,
    'stock-consumed': () => `stock consumed (${o.consumed} units) for a ${dead}`,
    'fraud-active': () => `${dead}, but its fraud check is still active`,
    'steps-not-compensated': () => `${dead}, but ledger steps were not compensated: ${o.forward.filter((f) => !f.endsWith('=cancelled')).join(', ')}`,
    'compensations-unfinished': () => `${dead}, but compensations did not finish: ${o.undo.filter((u) => !u.endsWith('=completed')).join(', ')}`,
  };
  for (const code of o.problems) add(words[code]?.() ?? code);
}

// ---------------------------------------------------------------------------
// The local payment and shipment records, key by key (with orderIds, the
// records of those orders, and those filed under their workflow IDs by the key
// format, so a stray key is seen too). What the provider or the carrier made
// of each key is theirs to reconcile (AuditOptions.checks).

export interface RecordKind {
  table: 'payments' | 'shipments';
  step: string;
  words: { local: string };
}

export const PAYMENTS: RecordKind = { table: 'payments', step: Step.chargePayment, words: { local: 'payment' } };
export const SHIPMENTS: RecordKind = { table: 'shipments', step: Step.createShipment, words: { local: 'shipment' } };

interface RecordProblems {
  key: string;
  /** The order whose step key this is; null when the key belongs to no order. */
  owner: string | null;
  problems: string[];
  local_order_id: string;
  local_status: string;
}

async function recordProblems(tx: Tx, ids: string[] | null, settled: boolean, kind: RecordKind): Promise<RecordProblems[]> {
  // Only a table name, a constant of this module, is spliced in; every value is a parameter.
  const res = await tx.query<RecordProblems>(
    `WITH l AS (
       SELECT * FROM ${kind.table}
        WHERE $1::text[] IS NULL OR order_id = ANY ($1::text[])
           OR substring(idempotency_key FROM $3) = ANY ($1::text[])),
     pending AS (SELECT key FROM step_ledger WHERE state = 'pending' AND step = $2),
     rec AS (
       SELECT l.idempotency_key AS key, o.id AS owner, l.order_id AS local_order_id, l.status AS local_status,
              -- The record moves once the step, or its undo, that moves it has committed.
              (l.idempotency_key IN (SELECT key FROM pending) OR l.idempotency_key || '/undo' IN (SELECT key FROM pending)) AS in_flight
         FROM l LEFT JOIN orders o ON $4 || o.id || '/' || $2 = l.idempotency_key),
     judged AS (
       SELECT rec.*, array_remove(CASE
         WHEN owner IS NULL THEN ARRAY['orphan-local']
         WHEN in_flight AND NOT $5::boolean THEN ARRAY[CASE WHEN local_order_id <> owner THEN 'misfiled' END]
         ELSE ARRAY[
           CASE WHEN local_order_id <> owner THEN 'misfiled' END,
           CASE WHEN local_status = 'pending' THEN 'pending' END]
       END, NULL) AS problems
         FROM rec)
     SELECT key, owner, problems, local_order_id, local_status FROM judged WHERE cardinality(problems) > 0`,
    [ids, kind.step, ORDER_OF_STEP_KEY, WF_PREFIX, settled],
  );
  return res.rows;
}

function describeRecord(p: RecordProblems, kind: RecordKind, settled: boolean, add: (subject: string, problem: string) => void): void {
  const { local } = kind.words;
  const words: Record<string, () => [subject: string, problem: string]> = {
    'orphan-local': () => [p.local_order_id, `local ${local} ${p.key} (${p.local_status}) belongs to no order`],
    misfiled: () => [p.owner!, `local ${local} is filed under order ${p.local_order_id}`],
    pending: () => [p.owner!, settled ? `local ${local} still pending` : `local ${local} pending, but no step is in flight for it`],
  };
  for (const code of p.problems) {
    const [subject, problem] = words[code]?.() ?? [p.owner ?? p.key, code];
    add(subject, p.owner === null ? problem : `${problem} (${p.key})`);
  }
}

// ---------------------------------------------------------------------------
// The ledger's own guarantees (packages/toolkit/src/ledger/ledger.ts): a compensation claims its
// undo key and tombstones the forward key in one transaction, and a tombstone
// is never written any other way nor ever leaves 'cancelled'.

interface LedgerFault {
  kind: 'pending' | 'undo' | 'tombstone';
  key: string;
  workflow_id: string;
  step: string;
  state: string;
  other_state: string | null;
}

async function ledgerFaults(tx: Tx, ids: string[] | null, settled: boolean): Promise<LedgerFault[]> {
  const res = await tx.query<LedgerFault>(
    `WITH l AS (
       SELECT key, workflow_id, step, state FROM step_ledger
        WHERE $1::text[] IS NULL OR workflow_id IN (SELECT $3 || x FROM unnest($1::text[]) AS x))
     SELECT 'pending' AS kind, key, workflow_id, step, state, NULL AS other_state FROM l
      WHERE $2::boolean AND state = 'pending'
        -- An undo an operator settled by hand stays pending in the ledger (it never applied): accounted for.
        AND NOT EXISTS (SELECT 1 FROM orders o, jsonb_array_elements(o.compensation_failures) e
                         WHERE o.workflow_id = l.workflow_id AND l.key = l.workflow_id || '/' || l.step || '/undo'
                           AND e ->> 'step' = l.step AND e -> 'resolution' ->> 'how' = 'manual')
     UNION ALL
     SELECT 'undo', u.key, u.workflow_id, u.step, u.state, f.state
       FROM l u LEFT JOIN step_ledger f ON f.key = u.workflow_id || '/' || u.step
      WHERE u.key = u.workflow_id || '/' || u.step || '/undo'
        AND (f.state IS DISTINCT FROM 'cancelled' OR u.state NOT IN ('pending', 'completed'))
     UNION ALL
     SELECT 'tombstone', f.key, f.workflow_id, f.step, f.state, NULL
       FROM l f
      WHERE f.key = f.workflow_id || '/' || f.step AND f.state = 'cancelled'
        AND NOT EXISTS (SELECT 1 FROM step_ledger u WHERE u.key = f.key || '/undo')`,
    [ids, settled, WF_PREFIX],
  );
  return res.rows;
}

function checkLedgerRow(r: LedgerFault, add: (subject: string, problem: string) => void): void {
  const subject = r.workflow_id.startsWith(WF_PREFIX) ? r.workflow_id.slice(WF_PREFIX.length) : r.key;
  switch (r.kind) {
    case 'pending':
      add(subject, `ledger row ${r.key} still pending`);
      return;
    case 'undo':
      if (r.other_state !== 'cancelled') {
        add(subject, `compensation ${r.key} is ${r.state}, but its forward step is ${r.other_state ?? 'missing'}, not a cancelled tombstone`);
      }
      if (r.state !== 'pending' && r.state !== 'completed') add(subject, `compensation ${r.key} is ${r.state}`);
      return;
    case 'tombstone':
      add(subject, `ledger row ${r.key} is a cancelled tombstone without its compensation's row`);
      return;
  }
}

// ---------------------------------------------------------------------------
// Stock: the reserved counter is the sum of held reservations; shipped stock left the shelf.

interface StockFault {
  sku: string;
  on_hand: number | null;
  reserved: number | null;
  held: number;
  consumed: number;
  initial: number | null;
}

async function stockFaults(tx: Tx, initialStock: Record<string, number>): Promise<StockFault[]> {
  const res = await tx.query<StockFault>(
    `WITH r AS (
       SELECT sku, coalesce(sum(quantity) FILTER (WHERE status = 'held'), 0)::bigint AS held,
              coalesce(sum(quantity) FILTER (WHERE status = 'consumed'), 0)::bigint AS consumed
         FROM reservations GROUP BY sku),
     init AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS t (sku, initial)),
     s AS (
       SELECT coalesce(i.sku, init.sku) AS sku, i.on_hand, i.reserved,
              coalesce(r.held, 0) AS held, coalesce(r.consumed, 0) AS consumed, init.initial
         FROM inventory i LEFT JOIN r ON r.sku = i.sku FULL JOIN init ON init.sku = i.sku)
     SELECT sku, on_hand, reserved, held::int, consumed::int, initial::int FROM s
      WHERE on_hand IS NULL OR reserved <> held OR reserved < 0 OR on_hand < reserved
         OR (initial IS NOT NULL AND on_hand + consumed <> initial)
      ORDER BY sku`,
    [Object.keys(initialStock), Object.values(initialStock)],
  );
  return res.rows;
}

function checkStock(s: StockFault, add: (subject: string, problem: string) => void): void {
  if (s.on_hand === null || s.reserved === null) {
    add(s.sku, `expected initial stock ${s.initial}, but the SKU is not in inventory`);
    return;
  }
  if (s.reserved !== s.held) add(s.sku, `reserved ${s.reserved}, but held reservations sum to ${s.held}`);
  if (s.reserved < 0 || s.on_hand < s.reserved) add(s.sku, `on hand ${s.on_hand}, reserved ${s.reserved}: not on_hand >= reserved >= 0`);
  if (s.initial !== null && s.on_hand + s.consumed !== s.initial) {
    add(s.sku, `stock not conserved: on hand ${s.on_hand} + consumed ${s.consumed} = ${s.on_hand + s.consumed}, started with ${s.initial}`);
  }
}

async function orphanReservations(tx: Tx): Promise<{ order_id: string; sku: string; quantity: number; status: string }[]> {
  const res = await tx.query<{ order_id: string; sku: string; quantity: number; status: string }>(
    `SELECT r.order_id, r.sku, r.quantity, r.status FROM reservations r
      WHERE r.status <> 'released' AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = r.order_id)
      ORDER BY r.order_id, r.sku`,
  );
  return res.rows;
}

/** Lines of an audit report that concern this order. */
export function violationsOf(report: AuditReport, orderId: string): string[] {
  return report.violations.filter((v) => v.startsWith(`${orderId}: `));
}

/** Stock per SKU: on hand, the reserved counter, and what held reservations add up to. */
export async function reconcileStock(db: Db): Promise<{ sku: string; onHand: number; reserved: number; held: number }[]> {
  const res = await db.query<{ sku: string; on_hand: number; reserved: number; held: number }>(
    `SELECT i.sku, i.on_hand, i.reserved,
            coalesce((SELECT sum(quantity) FROM reservations r WHERE r.sku = i.sku AND r.status = 'held'), 0)::int AS held
       FROM inventory i ORDER BY i.sku`,
  );
  return res.rows.map((r) => ({ sku: r.sku, onHand: r.on_hand, reserved: r.reserved, held: r.held }));
}

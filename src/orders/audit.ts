import type { Db, Tx } from '../db/pool';
import { inTransaction } from '../db/pool';
import { orderWorkflowId } from '../../workflows/order/ids';
import { Step } from '../../workflows/order/steps';

/**
 * The books audit: checks from the rows of every system (orders, stock, the
 * local payment and shipment records, the provider's and the carrier's own
 * books, the step ledger) that they say what the saga promises. Every check is
 * an invariant the code guarantees at every committed instant, or, with
 * `settled`, once nothing is in flight; an audit that flags correct books is as
 * useless as one that misses bad ones.
 *
 * - completed order: its charge key holds a succeeded provider charge of its
 *   amount and currency, its local payment is captured for the same; its
 *   shipment key a created label, its local shipment created; its reservations
 *   are its items, all consumed; its fraud check (if any) not voided; its
 *   forward ledger rows all completed (record, reserve, charge, ship, complete;
 *   fraud-check is optional), and no compensation ran.
 * - cancelled or failed order (closed by the last compensation): no succeeded
 *   charge, no captured payment, no created label or local shipment, no held or
 *   consumed stock, no active fraud check; every forward ledger row it has is a
 *   cancelled tombstone and every compensation row completed.
 * - pending order: in flight, not checked; with `settled`, a violation.
 * - each payment and shipment key, local record against the service's: they
 *   agree (captured/succeeded, refunded/refunded, declined/declined,
 *   voided/canceled or declined; created/created, voided/voided or canceled),
 *   same amount, the local row names the service's id; a service row other than
 *   a 'canceled' tombstone has a local row; the key is an existing order's step
 *   key (with `orderIds`, keys under those orders' workflow IDs are looked at).
 *   A key whose step or undo is in flight (a pending ledger row) is skipped
 *   unless `settled`, where a pending local record is itself a violation.
 * - ledger: a compensation row exists only beside its forward row as a
 *   cancelled tombstone, and is pending or completed; a tombstone has its
 *   compensation's row; with `settled`, no row is pending.
 * - stock, always over every SKU: reserved = the held reservations, on_hand >=
 *   reserved >= 0, and with `initialStock`, on_hand + consumed = the start;
 *   without `orderIds`, no held or consumed reservation belongs to no order.
 *
 * All queries read one REPEATABLE READ snapshot, so a system under load is
 * audited as of a single instant, and each is set-based and returns only what
 * is wrong: a handful of round trips whatever the number of orders.
 */

export interface AuditOptions {
  /** When true the system has settled: a pending order, a pending ledger row, a pending payment/shipment row is a violation. */
  settled?: boolean;
  /** Only these orders (default: all orders). Global stock checks still run. */
  orderIds?: string[];
  /** Expected on_hand + consumed per SKU from a known starting stock, to prove stock is conserved (optional). */
  initialStock?: Record<string, number>;
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
const WF_PREFIX = orderWorkflowId('');
/** A regular expression whose first group is the order a step key belongs to (for a service's key, no `/undo`). */
const ORDER_OF_KEY = `^${WF_PREFIX.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(.*)/[^/]+$`;

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

async function audit(tx: Tx, opts: AuditOptions, what: { stock: boolean }): Promise<AuditReport> {
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
    for (const p of await pairProblems(tx, ids, settled, kind)) describePair(p, kind, settled, add);
  }
  for (const row of await ledgerFaults(tx, ids, settled)) checkLedgerRow(row, add);
  if (what.stock) {
    for (const row of await stockFaults(tx, opts.initialStock ?? {})) checkStock(row, add);
    if (!ids) for (const r of await orphanReservations(tx)) add(r.order_id, `${r.status} reservation of ${r.quantity} ${r.sku}, but no such order`);
  }

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
  charge_id: string | null;
  charge_status: string | null;
  charge_amount: string | null;
  charge_currency: string | null;
  payment_status: string | null;
  payment_amount: string | null;
  payment_currency: string | null;
  label_id: string | null;
  label_status: string | null;
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
       SELECT o.id, o.status, o.amount_minor, o.currency, $4 || o.id AS wf
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
              count(*) FILTER (WHERE kind = 'undo' AND state <> 'completed') AS undos_unfinished
         FROM (SELECT l.workflow_id, l.step, l.state,
                      CASE l.key WHEN s.wf || '/' || l.step THEN 'forward' WHEN s.wf || '/' || l.step || '/undo' THEN 'undo' END AS kind
                 FROM step_ledger l JOIN scope s ON s.wf = l.workflow_id) l
        GROUP BY workflow_id),
     facts AS (
       SELECT s.id, s.wf, s.status, s.amount_minor, s.currency,
              c.id AS charge_id, c.status AS charge_status, c.amount_minor AS charge_amount, c.currency AS charge_currency,
              p.status AS payment_status, p.amount_minor AS payment_amount, p.currency AS payment_currency,
              cs.id AS label_id, cs.status AS label_status, sh.status AS shipment_status, f.status AS fraud_status,
              coalesce(st.held, 0) AS held, coalesce(st.consumed, 0) AS consumed, coalesce(st.unshipped_lines, 0) AS unshipped_lines,
              coalesce(lg.forward_not_completed, 0) AS forward_not_completed,
              coalesce(lg.forward_not_cancelled, 0) AS forward_not_cancelled,
              coalesce(lg.required_completed, 0) AS required_completed,
              coalesce(lg.undos, 0) AS undos, coalesce(lg.undos_unfinished, 0) AS undos_unfinished
         FROM scope s
         LEFT JOIN provider_charges c ON c.idempotency_key = s.wf || '/' || $2
         LEFT JOIN payments p ON p.idempotency_key = s.wf || '/' || $2
         LEFT JOIN carrier_shipments cs ON cs.idempotency_key = s.wf || '/' || $3
         LEFT JOIN shipments sh ON sh.idempotency_key = s.wf || '/' || $3
         LEFT JOIN fraud_checks f ON f.order_id = s.id
         LEFT JOIN stock st ON st.order_id = s.id
         LEFT JOIN ledger lg ON lg.workflow_id = s.wf),
     judged AS (
       SELECT facts.*, array_remove(CASE
         WHEN status = 'pending' THEN ARRAY['pending']
         -- Paid once, shipped once, its stock gone from the shelf, every step done and nothing undone.
         WHEN status = 'completed' THEN ARRAY[
           CASE WHEN charge_status IS DISTINCT FROM 'succeeded' THEN 'no-live-charge' END,
           CASE WHEN charge_status = 'succeeded' AND (charge_amount <> amount_minor OR charge_currency <> currency) THEN 'charge-amount' END,
           CASE WHEN payment_status IS DISTINCT FROM 'captured' THEN 'payment-not-captured' END,
           CASE WHEN payment_status = 'captured' AND (payment_amount <> amount_minor OR payment_currency <> currency) THEN 'payment-amount' END,
           CASE WHEN label_status IS DISTINCT FROM 'created' THEN 'no-live-label' END,
           CASE WHEN shipment_status IS DISTINCT FROM 'created' THEN 'shipment-not-created' END,
           CASE WHEN unshipped_lines > 0 THEN 'stock-not-consumed' END,
           -- Only a compensation voids an assessment, and a completed order was never compensated.
           CASE WHEN fraud_status = 'voided' THEN 'fraud-voided' END,
           CASE WHEN forward_not_completed > 0 OR required_completed < cardinality($5::text[]) THEN 'steps-not-completed' END,
           CASE WHEN undos > 0 THEN 'compensated' END]
         -- Closed by the record step's compensation, which runs last, after every other one:
         -- nothing the saga took may still be held, and every step it began is tombstoned.
         ELSE ARRAY[
           CASE WHEN charge_status = 'succeeded' THEN 'money-taken' END,
           CASE WHEN payment_status = 'captured' THEN 'payment-captured' END,
           CASE WHEN label_status = 'created' THEN 'live-label' END,
           CASE WHEN shipment_status = 'created' THEN 'shipment-created' END,
           CASE WHEN held > 0 THEN 'stock-held' END,
           CASE WHEN consumed > 0 THEN 'stock-consumed' END,
           CASE WHEN fraud_status = 'active' THEN 'fraud-active' END,
           CASE WHEN forward_not_cancelled > 0 THEN 'steps-not-compensated' END,
           CASE WHEN undos_unfinished > 0 THEN 'compensations-unfinished' END]
       END, NULL) AS problems
         FROM facts)
     SELECT j.id, j.status, j.problems, j.amount_minor::text AS amount_minor, j.currency,
            j.charge_id, j.charge_status, j.charge_amount::text AS charge_amount, j.charge_currency,
            j.payment_status, j.payment_amount::text AS payment_amount, j.payment_currency,
            j.label_id, j.label_status, j.shipment_status, j.held, j.consumed, j.unshipped_lines,
            coalesce(array_agg(l.step || '=' || l.state ORDER BY l.step) FILTER (WHERE l.key = j.wf || '/' || l.step), '{}') AS forward,
            coalesce(array_agg(l.step || '/undo=' || l.state ORDER BY l.step)
                       FILTER (WHERE l.key = j.wf || '/' || l.step || '/undo'), '{}') AS undo
       FROM judged j LEFT JOIN step_ledger l ON l.workflow_id = j.wf
      WHERE cardinality(j.problems) > 0
      GROUP BY j.id, j.status, j.problems, j.amount_minor, j.currency, j.charge_id, j.charge_status, j.charge_amount,
               j.charge_currency, j.payment_status, j.payment_amount, j.payment_currency, j.label_id, j.label_status,
               j.shipment_status, j.held, j.consumed, j.unshipped_lines`,
    [ids, Step.chargePayment, Step.createShipment, WF_PREFIX, COMPLETED_ORDER_STEPS, settled],
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
    'no-live-charge': () => `completed, but the provider has no live charge for it (charge ${o.charge_status ?? 'missing'})`,
    'charge-amount': () => `completed for ${money(o.amount_minor, o.currency)}, but charged ${money(o.charge_amount, o.charge_currency)} (${o.charge_id})`,
    'payment-not-captured': () => `completed, but its local payment is ${o.payment_status ?? 'missing'}, not captured`,
    'payment-amount': () => `completed for ${money(o.amount_minor, o.currency)}, but its local payment captured ${money(o.payment_amount, o.payment_currency)}`,
    'no-live-label': () => `completed, but the carrier has no live label for it (label ${o.label_status ?? 'missing'})`,
    'shipment-not-created': () => `completed, but its local shipment is ${o.shipment_status ?? 'missing'}, not created`,
    'stock-not-consumed': () =>
      `completed, but ${o.unshipped_lines} item line(s) are not consumed reservations of the ordered quantity (held ${o.held}, consumed ${o.consumed} units)`,
    'fraud-voided': () => 'completed, but its fraud check was voided',
    'steps-not-completed': () => `completed, but ledger steps are not all completed: ${notCompleted.join(', ')}`,
    compensated: () => `completed, but compensations ran: ${o.undo.join(', ')}`,
    'money-taken': () => `money taken for a ${dead}: live charge ${o.charge_id} of ${money(o.charge_amount, o.charge_currency)}`,
    'payment-captured': () => `${dead}, but its local payment is still captured`,
    'live-label': () => `live label ${o.label_id} for a ${dead}`,
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
// Local records against the provider's and the carrier's books, key by key:
// one row per key found on either side (with orderIds, the keys of those
// orders, by the key format, so a stray key under their workflow ID is seen too).

interface PairKind {
  local: 'payments' | 'shipments';
  remote: 'provider_charges' | 'carrier_shipments';
  step: string;
  /** Columns of the local table: the service's id it names, the amount (if any). */
  localRef: string;
  localAmount: string;
  remoteAmount: string;
  /** Local and service statuses that may stand side by side once no step is in flight. */
  agrees: [local: string, remote: string][];
  /** The local status that must name the service's record by its id. */
  live: string;
  words: { local: string; remote: string; service: string };
}

// A refund of a key never charged leaves the provider's 'canceled' tombstone, of a declined
// charge 'nothing_to_refund': both void a local row still pending (a declined one stays declined).
const PAYMENTS: PairKind = {
  local: 'payments',
  remote: 'provider_charges',
  step: Step.chargePayment,
  localRef: 'provider_charge_id',
  localAmount: `l.amount_minor::text AS local_amount, l.currency::text AS local_currency`,
  remoteAmount: `r.amount_minor::text AS remote_amount, r.currency::text AS remote_currency`,
  agrees: [
    ['captured', 'succeeded'],
    ['refunded', 'refunded'],
    ['declined', 'declined'],
    ['voided', 'canceled'],
    ['voided', 'declined'],
  ],
  live: 'captured',
  words: { local: 'payment', remote: 'charge', service: 'provider' },
};

// A void of a label never created leaves the carrier's 'canceled' tombstone.
const SHIPMENTS: PairKind = {
  local: 'shipments',
  remote: 'carrier_shipments',
  step: Step.createShipment,
  localRef: 'carrier_shipment_id',
  localAmount: `NULL::text AS local_amount, NULL::text AS local_currency`,
  remoteAmount: `NULL::text AS remote_amount, NULL::text AS remote_currency`,
  agrees: [
    ['created', 'created'],
    ['voided', 'voided'],
    ['voided', 'canceled'],
  ],
  live: 'created',
  words: { local: 'shipment', remote: 'label', service: 'carrier' },
};

interface PairProblems {
  key: string;
  /** The order whose step key this is; null when the key belongs to no order. */
  owner: string | null;
  problems: string[];
  local_order_id: string | null;
  local_status: string | null;
  local_ref: string | null;
  local_amount: string | null;
  local_currency: string | null;
  remote_status: string | null;
  remote_id: string | null;
  remote_amount: string | null;
  remote_currency: string | null;
}

async function pairProblems(tx: Tx, ids: string[] | null, settled: boolean, kind: PairKind): Promise<PairProblems[]> {
  // Only table and column names, constants of this module, are spliced in; every value is a parameter.
  const res = await tx.query<PairProblems>(
    `WITH l AS (
       SELECT * FROM ${kind.local}
        WHERE $1::text[] IS NULL OR order_id = ANY ($1::text[])
           OR substring(idempotency_key FROM $3) = ANY ($1::text[])),
     r AS (
       SELECT * FROM ${kind.remote}
        WHERE $1::text[] IS NULL OR substring(idempotency_key FROM $3) = ANY ($1::text[])),
     pending AS (SELECT key FROM step_ledger WHERE state = 'pending' AND step = $2),
     agrees AS (SELECT * FROM unnest($6::text[], $7::text[]) AS a (local_status, remote_status)),
     pair AS (
       SELECT coalesce(l.idempotency_key, r.idempotency_key) AS key, o.id AS owner,
              l.order_id AS local_order_id, l.status AS local_status, l.${kind.localRef} AS local_ref, ${kind.localAmount},
              r.status AS remote_status, r.id AS remote_id, ${kind.remoteAmount},
              a.local_status IS NOT NULL AS agreed,
              -- The local record and the service's agree once the step, or its undo, that moves them has committed.
              (coalesce(l.idempotency_key, r.idempotency_key) IN (SELECT key FROM pending)
                OR coalesce(l.idempotency_key, r.idempotency_key) || '/undo' IN (SELECT key FROM pending)) AS in_flight
         FROM l FULL JOIN r ON r.idempotency_key = l.idempotency_key
         LEFT JOIN agrees a ON a.local_status = l.status AND a.remote_status = r.status
         LEFT JOIN orders o ON $4 || o.id || '/' || $2 = coalesce(l.idempotency_key, r.idempotency_key)),
     judged AS (
       SELECT pair.*, array_remove(CASE
         -- The service's tombstone is no charge or label, whoever's key it is.
         WHEN owner IS NULL THEN ARRAY[
           CASE WHEN remote_status <> 'canceled' THEN 'orphan-remote' END,
           CASE WHEN local_status IS NOT NULL THEN 'orphan-local' END]
         WHEN in_flight AND NOT $5::boolean THEN ARRAY[CASE WHEN local_order_id <> owner THEN 'misfiled' END]
         ELSE ARRAY[
           CASE WHEN local_order_id <> owner THEN 'misfiled' END,
           CASE
             -- The local record is written before the service is ever called.
             WHEN local_status IS NULL THEN CASE WHEN remote_status <> 'canceled' THEN 'no-local' END
             WHEN local_status = 'pending' THEN 'pending'
             WHEN remote_status IS NULL THEN 'no-remote'
             WHEN NOT agreed THEN 'disagree'
           END,
           CASE WHEN local_status <> 'pending' AND remote_amount IS NOT NULL
                 AND (remote_amount <> local_amount OR remote_currency <> local_currency) THEN 'amount' END,
           CASE WHEN local_status = $8 AND remote_status IS NOT NULL AND local_ref IS DISTINCT FROM remote_id THEN 'ref' END]
       END, NULL) AS problems
         FROM pair)
     SELECT key, owner, problems, local_order_id, local_status, local_ref, local_amount, local_currency,
            remote_status, remote_id, remote_amount, remote_currency
       FROM judged WHERE cardinality(problems) > 0`,
    [ids, kind.step, ORDER_OF_KEY, WF_PREFIX, settled, kind.agrees.map((a) => a[0]), kind.agrees.map((a) => a[1]), kind.live],
  );
  return res.rows;
}

function describePair(p: PairProblems, kind: PairKind, settled: boolean, add: (subject: string, problem: string) => void): void {
  const { local, remote, service } = kind.words;
  const theirs = `${remote} ${p.remote_id ?? '(tombstone)'} ${p.remote_status}`;
  const words: Record<string, () => [subject: string, problem: string]> = {
    'orphan-remote': () => [p.key, `${theirs} belongs to no order`],
    'orphan-local': () => [p.local_order_id ?? p.key, `local ${local} ${p.key} (${p.local_status}) belongs to no order`],
    misfiled: () => [p.owner!, `local ${local} is filed under order ${p.local_order_id}`],
    'no-local': () => [p.owner!, `${theirs} has no local ${local} record`],
    pending: () => [p.owner!, settled ? `local ${local} still pending` : `local ${local} pending, but no step is in flight for it`],
    'no-remote': () => [p.owner!, `local ${local} is ${p.local_status}, but the ${service} has no record of it`],
    disagree: () => [p.owner!, `local ${local} is ${p.local_status}, but the ${theirs}`],
    amount: () => [p.owner!, `local ${local} is for ${p.local_amount} ${p.local_currency}, the ${remote} for ${p.remote_amount} ${p.remote_currency}`],
    ref: () => [p.owner!, `local ${local} names ${remote} ${p.local_ref}, the ${service} has ${p.remote_id}`],
  };
  for (const code of p.problems) {
    const [subject, problem] = words[code]?.() ?? [p.owner ?? p.key, code];
    add(subject, p.owner === null ? problem : `${problem} (${p.key})`);
  }
}

// ---------------------------------------------------------------------------
// The ledger's own guarantees (src/ledger/ledger.ts): a compensation claims its
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

// ---------------------------------------------------------------------------
// One order's books in figures, for tables and tests; its problems are the audit's lines about it.

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
  /** The audit's violations about this order (not settled: an order in flight has none); empty when its books balance. */
  problems: string[];
}

/** The figures of these orders' books in one query; `problems` is left empty. */
export async function orderBooks(db: Db | Tx, orderIds: string[]): Promise<OrderBooks[]> {
  const res = await db.query<{
    id: string;
    status: string | null;
    amount_minor: string | null;
    net_charged: string;
    active_shipments: number;
    held: number;
    consumed: number;
  }>(
    `WITH q AS (SELECT DISTINCT unnest($1::text[]) AS id),
     charged AS (
       SELECT substring(idempotency_key FROM $2) AS id, sum(amount_minor) AS net
         FROM provider_charges
        WHERE status = 'succeeded' AND substring(idempotency_key FROM $2) IN (SELECT id FROM q)
        GROUP BY 1),
     labels AS (
       SELECT substring(idempotency_key FROM $2) AS id, count(*)::int AS n
         FROM carrier_shipments
        WHERE status = 'created' AND substring(idempotency_key FROM $2) IN (SELECT id FROM q)
        GROUP BY 1),
     stock AS (
       SELECT order_id AS id,
              coalesce(sum(quantity) FILTER (WHERE status = 'held'), 0)::int AS held,
              coalesce(sum(quantity) FILTER (WHERE status = 'consumed'), 0)::int AS consumed
         FROM reservations WHERE order_id IN (SELECT id FROM q) GROUP BY 1)
     SELECT q.id, o.status, o.amount_minor::text AS amount_minor, coalesce(c.net, 0)::text AS net_charged,
            coalesce(l.n, 0) AS active_shipments, coalesce(s.held, 0) AS held, coalesce(s.consumed, 0) AS consumed
       FROM q LEFT JOIN orders o ON o.id = q.id LEFT JOIN charged c ON c.id = q.id
       LEFT JOIN labels l ON l.id = q.id LEFT JOIN stock s ON s.id = q.id`,
    [orderIds, ORDER_OF_KEY],
  );
  const byId = new Map(res.rows.map((r) => [r.id, r]));
  return orderIds.map((id) => {
    const r = byId.get(id);
    return {
      orderId: id,
      status: r?.status ?? 'absent',
      amountMinor: Number(r?.amount_minor ?? 0),
      netChargedMinor: Number(r?.net_charged ?? 0),
      activeShipments: r?.active_shipments ?? 0,
      heldUnits: r?.held ?? 0,
      consumedUnits: r?.consumed ?? 0,
      problems: [],
    };
  });
}

/** Lines of an audit report that concern this order. */
export function violationsOf(report: AuditReport, orderId: string): string[] {
  return report.violations.filter((v) => v.startsWith(`${orderId}: `));
}

/**
 * One order's books: its figures, and the audit's violations about it (stock
 * and other orders left out). Not `settled`: an order still in flight has no problems yet.
 */
export async function reconcileOrder(db: Db, orderId: string): Promise<OrderBooks> {
  return inTransaction(db, async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const [books] = await orderBooks(tx, [orderId]);
    const report = await audit(tx, { orderIds: [orderId] }, { stock: false });
    return { ...books!, problems: violationsOf(report, orderId) };
  });
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

import { inTransaction, type Db, type Tx } from '../../src/db/pool';
import { audit, ORDER_OF_STEP_KEY, PAYMENTS, SHIPMENTS, violationsOf, WF_PREFIX, type AuditCheck, type AuditScope, type RecordKind } from '../../src/orders/audit';
import { Step } from '../../workflows/order/steps';

/**
 * The simulated payment provider's and carrier's books against sagaflow's, for
 * the dev stack, the chaos soak and the tests: what a deployment would do with
 * its real provider's reports. Plugged into the books audit as a check
 * (`auditBooks(db, { checks: [reconcileSimulatedServices] })`), it runs in the
 * audit's snapshot and reads the services' own tables (dev/services/schema.ts).
 *
 * - completed order: its charge key holds a succeeded charge of its amount and
 *   currency, its shipment key a created label.
 * - cancelled or failed order: no succeeded charge, no created label.
 * - each payment and shipment key, local record against the service's: they
 *   agree (captured/succeeded, refunded/refunded, declined/declined,
 *   voided/canceled or declined; created/created, voided/voided or canceled),
 *   same amount, the local row names the service's id; a service row other than
 *   a 'canceled' tombstone has a local row and is an existing order's step key.
 *   A key whose step or undo is in flight (a pending ledger row) is skipped
 *   unless `settled`; a pending local record is the audit's own to judge.
 */
export const reconcileSimulatedServices: AuditCheck = async (tx, scope) => {
  const violations: string[] = [];
  const add = (subject: string, problem: string) => violations.push(`${subject}: ${problem}`);
  for (const o of await orderProblems(tx, scope)) describeOrder(o, (p) => add(o.id, p));
  for (const kind of [PROVIDER, CARRIER]) {
    for (const p of await pairProblems(tx, scope, kind)) describePair(p, kind, add);
  }
  return violations;
};

// ---------------------------------------------------------------------------
// Orders: what each closed order's status promises about the services' books.

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
  label_id: string | null;
  label_status: string | null;
}

async function orderProblems(tx: Tx, { orderIds }: AuditScope): Promise<OrderProblems[]> {
  const res = await tx.query<OrderProblems>(
    `WITH facts AS (
       SELECT o.id, o.status, o.amount_minor, o.currency,
              c.id AS charge_id, c.status AS charge_status, c.amount_minor AS charge_amount, c.currency AS charge_currency,
              cs.id AS label_id, cs.status AS label_status
         FROM orders o
         LEFT JOIN provider_charges c ON c.idempotency_key = $4 || o.id || '/' || $2
         LEFT JOIN carrier_shipments cs ON cs.idempotency_key = $4 || o.id || '/' || $3
        WHERE ($1::text[] IS NULL OR o.id = ANY ($1::text[])) AND o.status <> 'pending'),
     judged AS (
       SELECT facts.*, array_remove(CASE
         WHEN status = 'completed' THEN ARRAY[
           CASE WHEN charge_status IS DISTINCT FROM 'succeeded' THEN 'no-live-charge' END,
           CASE WHEN charge_status = 'succeeded' AND (charge_amount <> amount_minor OR charge_currency <> currency) THEN 'charge-amount' END,
           CASE WHEN label_status IS DISTINCT FROM 'created' THEN 'no-live-label' END]
         ELSE ARRAY[
           CASE WHEN charge_status = 'succeeded' THEN 'money-taken' END,
           CASE WHEN label_status = 'created' THEN 'live-label' END]
       END, NULL) AS problems
         FROM facts)
     SELECT id, status, problems, amount_minor::text AS amount_minor, currency, charge_id, charge_status,
            charge_amount::text AS charge_amount, charge_currency, label_id, label_status
       FROM judged WHERE cardinality(problems) > 0`,
    [orderIds, Step.chargePayment, Step.createShipment, WF_PREFIX],
  );
  return res.rows;
}

function describeOrder(o: OrderProblems, add: (problem: string) => void): void {
  const money = (amount: string | null, currency: string | null) => `${amount ?? '?'} ${currency ?? '?'}`;
  const dead = `${o.status} order`;
  const words: Record<string, () => string> = {
    'no-live-charge': () => `completed, but the provider has no live charge for it (charge ${o.charge_status ?? 'missing'})`,
    'charge-amount': () => `completed for ${money(o.amount_minor, o.currency)}, but charged ${money(o.charge_amount, o.charge_currency)} (${o.charge_id})`,
    'no-live-label': () => `completed, but the carrier has no live label for it (label ${o.label_status ?? 'missing'})`,
    'money-taken': () => `money taken for a ${dead}: live charge ${o.charge_id} of ${money(o.charge_amount, o.charge_currency)}`,
    'live-label': () => `live label ${o.label_id} for a ${dead}`,
  };
  for (const code of o.problems) add(words[code]?.() ?? code);
}

// ---------------------------------------------------------------------------
// Local records against the provider's and the carrier's books, key by key:
// one row per key found on either side.

interface PairKind {
  record: RecordKind;
  remote: 'provider_charges' | 'carrier_shipments';
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
const PROVIDER: PairKind = {
  record: PAYMENTS,
  remote: 'provider_charges',
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
const CARRIER: PairKind = {
  record: SHIPMENTS,
  remote: 'carrier_shipments',
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
  owner: string | null;
  problems: string[];
  local_status: string | null;
  local_ref: string | null;
  local_amount: string | null;
  local_currency: string | null;
  remote_status: string | null;
  remote_id: string | null;
  remote_amount: string | null;
  remote_currency: string | null;
}

async function pairProblems(tx: Tx, { orderIds, settled }: AuditScope, kind: PairKind): Promise<PairProblems[]> {
  // Only table and column names, constants of this module, are spliced in; every value is a parameter.
  const res = await tx.query<PairProblems>(
    `WITH l AS (
       SELECT * FROM ${kind.record.table}
        WHERE $1::text[] IS NULL OR order_id = ANY ($1::text[])
           OR substring(idempotency_key FROM $3) = ANY ($1::text[])),
     r AS (
       SELECT * FROM ${kind.remote}
        WHERE $1::text[] IS NULL OR substring(idempotency_key FROM $3) = ANY ($1::text[])),
     pending AS (SELECT key FROM step_ledger WHERE state = 'pending' AND step = $2),
     agrees AS (SELECT * FROM unnest($6::text[], $7::text[]) AS a (local_status, remote_status)),
     pair AS (
       SELECT coalesce(l.idempotency_key, r.idempotency_key) AS key, o.id AS owner,
              l.status AS local_status, l.${kind.localRef} AS local_ref, ${kind.localAmount},
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
         -- The service's tombstone is no charge or label, whoever's key it is; a stray local record is the audit's own.
         WHEN owner IS NULL THEN ARRAY[CASE WHEN remote_status <> 'canceled' THEN 'orphan-remote' END]
         WHEN in_flight AND NOT $5::boolean THEN ARRAY[]::text[]
         ELSE ARRAY[
           CASE
             -- The local record is written before the service is ever called.
             WHEN local_status IS NULL THEN CASE WHEN remote_status <> 'canceled' THEN 'no-local' END
             WHEN local_status = 'pending' THEN NULL
             WHEN remote_status IS NULL THEN 'no-remote'
             WHEN NOT agreed THEN 'disagree'
           END,
           CASE WHEN local_status <> 'pending' AND remote_amount IS NOT NULL
                 AND (remote_amount <> local_amount OR remote_currency <> local_currency) THEN 'amount' END,
           CASE WHEN local_status = $8 AND remote_status IS NOT NULL AND local_ref IS DISTINCT FROM remote_id THEN 'ref' END]
       END, NULL) AS problems
         FROM pair)
     SELECT key, owner, problems, local_status, local_ref, local_amount, local_currency,
            remote_status, remote_id, remote_amount, remote_currency
       FROM judged WHERE cardinality(problems) > 0`,
    [orderIds, kind.record.step, ORDER_OF_STEP_KEY, WF_PREFIX, settled, kind.agrees.map((a) => a[0]), kind.agrees.map((a) => a[1]), kind.live],
  );
  return res.rows;
}

function describePair(p: PairProblems, kind: PairKind, add: (subject: string, problem: string) => void): void {
  const { local, remote, service } = kind.words;
  const theirs = `${remote} ${p.remote_id ?? '(tombstone)'} ${p.remote_status}`;
  const words: Record<string, () => [subject: string, problem: string]> = {
    'orphan-remote': () => [p.key, `${theirs} belongs to no order`],
    'no-local': () => [p.owner!, `${theirs} has no local ${local} record`],
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
    [orderIds, ORDER_OF_STEP_KEY],
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

/**
 * One order's books: its figures, and the audit's violations about it with the
 * simulated services reconciled (stock and other orders left out). Not
 * `settled`: an order still in flight has no problems yet.
 */
export async function reconcileOrder(db: Db, orderId: string): Promise<OrderBooks> {
  return inTransaction(db, async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const [books] = await orderBooks(tx, [orderId]);
    const report = await audit(tx, { orderIds: [orderId], checks: [reconcileSimulatedServices] }, { stock: false });
    return { ...books!, problems: violationsOf(report, orderId) };
  });
}

/**
 * What operators see of the sagas: a list to find them, one saga in full to act on it. Read-only;
 * shared by `sagaflow sagas` (bin/sagas.ts) and, later, an admin API.
 *
 * Where each part comes from:
 * - the order's status, age and client, and the pages: PostgreSQL (`orders`, one keyset statement
 *   per page over orders_created_idx or orders_client_created_idx, as GET /orders);
 * - the saga's status: Temporal visibility (the SagaStatus search attribute, which the saga
 *   writes as its phase changes; else the execution's own status), read for the page's workflow
 *   IDs in one list call. Visibility lags the saga by up to a second or so;
 * - the current step: the saga's status query, live, for the sagas still open (the CurrentStep
 *   search attribute is written only when the phase changes, so it is not the step in flight).
 */
import { WorkflowNotFoundError, type Client, type WorkflowExecutionDescription, type WorkflowExecutionInfo } from '@temporalio/client';
import type { QueryDefinition } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { createLedger, type LedgerEntry } from '@sagaflow/toolkit/ledger';
import type { Db } from '../db/pool';
import { cursorScope, decodeCursor, encodeCursor, InvalidCursor, listOrders, MAX_PAGE, ORDER_STATUSES, type ListedOrder, type OrderPosition, type OrderStatus } from '../orders/list';
import { findOrder, type OrderRow } from '../orders/repository';
import { statusQuery } from '../../workflows/order/definitions';
import { SagaStatusKey } from '../../workflows/order/search-attributes';

/** What the saga's status query answers. */
export type SagaStatus = typeof statusQuery extends QueryDefinition<infer S> ? S : never;

export { InvalidCursor };

/**
 * A saga's status as operators filter on it: its phase (running, compensating, completed,
 * compensated, cancelled, failed), or what Temporal says of a run that ended otherwise
 * (terminated, timed_out, canceled), or not_started for an order whose saga was never started.
 */
export const SAGA_STATUSES = ['running', 'compensating', 'completed', 'compensated', 'cancelled', 'failed', 'terminated', 'timed_out', 'canceled', 'not_started'] as const;
export type SagaStatusName = (typeof SAGA_STATUSES)[number] | (string & {});

/** Something the operator asked for that does not exist or cannot be: one line, exit 1. */
export class OperatorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OperatorError';
  }
}

export interface OperatorDeps {
  db: Db;
  temporal: Client;
  /** The namespace the client is on, for the Temporal UI link. */
  namespace: string;
  /** TEMPORAL_UI_URL: the Temporal UI's base URL, if there is one. */
  temporalUiUrl?: string;
  /** How long live calls to Temporal (status queries) may take, in all, per call. Default 3 s. */
  liveTimeoutMs?: number;
}

export interface SagaListFilter {
  /** The order's status (PostgreSQL). */
  status?: OrderStatus;
  /** The saga's status (Temporal visibility): see SAGA_STATUSES. */
  sagaStatus?: string;
  /** The step in flight (the live status query of open sagas). */
  step?: string;
  /** Orders created at least this long ago (PostgreSQL). */
  olderThanMs?: number;
  /** An API client's name or ID (PostgreSQL). */
  client?: string;
}

export interface SagaSummary {
  orderId: string;
  workflowId: string;
  orderStatus: OrderStatus;
  sagaStatus: string;
  createdAt: string;
  ageMs: number;
  client: { id: string; name: string | null } | null;
  currentStep: string | null;
}

/** At most this many orders are read from PostgreSQL per call when Temporal filters thin them out. */
const SCAN_PER_CALL = 1000;

/**
 * One page of sagas, newest order first. With --saga-status or --step the page may be short, and
 * even empty with a next cursor, when few of the orders read match: follow `nextCursor` until it is
 * null. A cursor continues the listing it came from (the same filters; any limit).
 */
export async function listSagas(
  deps: OperatorDeps,
  filter: SagaListFilter,
  page: { cursor?: string; limit: number; now?: number },
): Promise<{ sagas: SagaSummary[]; nextCursor: string | null }> {
  if (!Number.isInteger(page.limit) || page.limit < 1 || page.limit > MAX_PAGE) throw new OperatorError(`limit: 1 to ${MAX_PAGE}, not ${page.limit}`);
  if (filter.status !== undefined && !ORDER_STATUSES.includes(filter.status)) throw new OperatorError(`status: one of ${ORDER_STATUSES.join(', ')}`);
  if (filter.sagaStatus !== undefined && !(SAGA_STATUSES as readonly string[]).includes(filter.sagaStatus)) {
    throw new OperatorError(`saga status: one of ${SAGA_STATUSES.join(', ')}`);
  }
  const clientId = filter.client === undefined ? undefined : await clientIdOf(deps.db, filter.client);
  const scope = cursorScope({
    operator: 'sagas',
    client: clientId,
    status: filter.status,
    saga_status: filter.sagaStatus,
    step: filter.step,
    older_than_ms: filter.olderThanMs,
  });
  let after: OrderPosition | undefined = page.cursor === undefined ? undefined : decodeCursor(page.cursor, scope);
  const now = page.now ?? Date.now();
  const createdBefore = filter.olderThanMs === undefined ? undefined : new Date(now - filter.olderThanMs);
  const deadline = Date.now() + (deps.liveTimeoutMs ?? 3000);
  const thinned = filter.sagaStatus !== undefined || filter.step !== undefined;

  const sagas: SagaSummary[] = [];
  let scanned = 0;
  for (;;) {
    const batch = await listOrders(
      deps.db,
      { clientId, status: filter.status, createdBefore },
      { after, limit: thinned ? MAX_PAGE : page.limit },
    );
    const open = await sagasOf(deps.temporal, batch.orders.map((o) => o.workflow_id));
    const steps = await liveSteps(deps.temporal, batch.orders.filter((o) => open.get(o.workflow_id)?.status.name === 'RUNNING').map((o) => o.workflow_id), deadline);
    for (const order of batch.orders) {
      scanned++;
      after = order.position;
      const summary = summarize(order, open.get(order.workflow_id), steps.get(order.workflow_id) ?? null, now);
      if (filter.sagaStatus !== undefined && summary.sagaStatus !== filter.sagaStatus) continue;
      if (filter.step !== undefined && !(summary.currentStep ?? '').split(',').includes(filter.step)) continue;
      sagas.push(summary);
      if (sagas.length === page.limit) {
        const more = order !== batch.orders[batch.orders.length - 1] || batch.next !== undefined;
        return { sagas, nextCursor: more ? encodeCursor(order.position, scope) : null };
      }
    }
    if (!batch.next) return { sagas, nextCursor: null };
    // Enough read for one answer: the caller follows the cursor for the rest.
    if (scanned >= SCAN_PER_CALL) return { sagas, nextCursor: encodeCursor(batch.next, scope) };
  }
}

function summarize(order: ListedOrder, execution: WorkflowExecutionInfo | undefined, currentStep: string | null, now: number): SagaSummary {
  const createdAt = new Date(order.created_at);
  return {
    orderId: order.id,
    workflowId: order.workflow_id,
    orderStatus: order.status,
    sagaStatus: sagaStatusOf(execution),
    createdAt: createdAt.toISOString(),
    ageMs: Math.max(0, now - createdAt.getTime()),
    client: order.client_id === null ? null : { id: order.client_id, name: order.client_name },
    currentStep,
  };
}

/** The saga's status from visibility: its phase while it ran or once it completed, else how Temporal says it ended. */
function sagaStatusOf(execution: Pick<WorkflowExecutionInfo, 'status' | 'typedSearchAttributes'> | undefined): string {
  if (!execution) return 'not_started';
  const phase = execution.typedSearchAttributes.get(SagaStatusKey);
  const status = execution.status.name;
  if (phase !== undefined && (status === 'RUNNING' || status === 'COMPLETED' || (status === 'FAILED' && phase === 'failed'))) return phase;
  if (status === 'FAILED') return 'failed';
  return status.toLowerCase();
}

/** The client named, by ID or name; an unknown one is the operator's mistake, said in a line. */
async function clientIdOf(db: Db, nameOrId: string): Promise<string> {
  const res = await db.query<{ id: string }>('SELECT id FROM api_clients WHERE id = $1 OR name = $1', [nameOrId]);
  if (!res.rows[0]) throw new OperatorError(`no client named or with ID "${nameOrId}"`);
  return res.rows[0].id;
}

/** The executions of these workflow IDs, from visibility, in one list call (by ID: at most 100 of them). */
async function sagasOf(client: Client, workflowIds: string[]): Promise<Map<string, WorkflowExecutionInfo>> {
  const found = new Map<string, WorkflowExecutionInfo>();
  if (!workflowIds.length) return found;
  // Workflow IDs are order-<id> with [A-Za-z0-9_-] IDs: nothing to escape in the quotes.
  const query = `WorkflowId IN (${workflowIds.map((id) => `'${id.replace(/'/g, '')}'`).join(', ')})`;
  for await (const execution of client.workflow.list({ query, pageSize: workflowIds.length })) {
    const seen = found.get(execution.workflowId);
    // One run per order (REJECT_DUPLICATE); should there be more, the latest speaks.
    if (!seen || seen.startTime < execution.startTime) found.set(execution.workflowId, execution);
  }
  return found;
}

/** The step in flight of each open saga, by its status query; none for one that does not answer by the deadline. */
async function liveSteps(client: Client, workflowIds: string[], deadline: number): Promise<Map<string, string | null>> {
  const steps = new Map<string, string | null>();
  await Promise.all(
    workflowIds.map(async (id) => {
      const status = await client.withDeadline(deadline, () => client.workflow.getHandle(id).query(statusQuery)).catch(() => undefined);
      steps.set(id, status?.currentStep ?? null);
    }),
  );
  return steps;
}

/** One activity as the history tells it: each scheduling of a step or an undo, its attempts and how it ended. */
export interface ActivityRecord {
  activity: string;
  activityId: string;
  scheduledAt: string | null;
  attempts: number;
  /** completed, failed, timed_out, canceled, or running (retrying, or in flight). */
  outcome: string;
  lastError: string | null;
}

export interface SagaDetail {
  order: OrderRow & { client_name: string | null; saga_started_at: Date | null; updated_at: Date; compensation_failures: unknown[] | null };
  workflowId: string;
  temporalUi: string | null;
  saga: {
    /** As `sagas list` says it (SAGA_STATUSES). */
    status: string;
    /** The execution as Temporal describes it; absent for a saga never started. */
    execution?: { runId: string; status: string; startTime: string; closeTime: string | null; historyLength: number; taskQueue: string };
    /** The saga's own status query: steps done, in flight, compensations with attempts and last errors, retries, failure. */
    live?: SagaStatus;
    /** Why there is no live status, where there is none. */
    liveUnavailable?: string;
  };
  activities: ActivityRecord[];
  ledger: LedgerEntry[];
  references: {
    payments: { idempotencyKey: string; status: string; providerChargeId: string | null; amountMinor: number; currency: string; updatedAt: string }[];
    shipments: { idempotencyKey: string; status: string; carrierShipmentId: string | null; trackingNumber: string | null; updatedAt: string }[];
    fraudChecks: { decision: string; score: number; status: string; updatedAt: string }[];
    reservations: { sku: string; quantity: number; status: string; updatedAt: string }[];
  };
}

/** The Temporal UI's page of a workflow, if the UI's address is known. */
export function temporalUiLink(baseUrl: string | undefined, namespace: string, workflowId: string): string | null {
  if (!baseUrl) return null;
  return `${baseUrl.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

/** Everything known of one order's saga; undefined for an order that does not exist. */
export async function showSaga(deps: OperatorDeps, orderId: string): Promise<SagaDetail | undefined> {
  const row = /^[A-Za-z0-9_-]{1,64}$/.test(orderId) ? await findOrder(deps.db, orderId) : undefined;
  if (!row) return undefined;
  const extra = await deps.db.query<{ client_name: string | null; saga_started_at: Date | null; updated_at: Date; compensation_failures: unknown[] | null }>(
    `SELECT c.name AS client_name, o.saga_started_at, o.updated_at, o.compensation_failures
       FROM orders o LEFT JOIN api_clients c ON c.id = o.client_id WHERE o.id = $1`,
    [orderId],
  );
  const workflowId = row.workflow_id;
  const handle = deps.temporal.workflow.getHandle(workflowId);
  const described = await handle.describe().catch((e: unknown) => {
    if (e instanceof WorkflowNotFoundError) return undefined;
    throw e;
  });
  const [saga, activities, ledger, references] = await Promise.all([
    sagaOf(deps, workflowId, described),
    described ? activitiesOf(deps.temporal, workflowId, described) : [],
    createLedger(deps.db).read(workflowId),
    referencesOf(deps.db, orderId),
  ]);
  return {
    order: { ...row, ...extra.rows[0]! },
    workflowId,
    temporalUi: temporalUiLink(deps.temporalUiUrl, deps.namespace, workflowId),
    saga,
    activities,
    ledger,
    references,
  };
}

async function sagaOf(deps: OperatorDeps, workflowId: string, described: WorkflowExecutionDescription | undefined): Promise<SagaDetail['saga']> {
  const handle = deps.temporal.workflow.getHandle(workflowId);
  if (!described) return { status: 'not_started', liveUnavailable: 'the saga was never started' };
  const execution = {
    runId: described.runId,
    status: described.status.name.toLowerCase(),
    startTime: described.startTime.toISOString(),
    closeTime: described.closeTime?.toISOString() ?? null,
    historyLength: described.historyLength,
    taskQueue: described.taskQueue,
  };
  const status = sagaStatusOf(described);
  // A terminated or timed-out run never finished its last task: a query would replay it to a
  // state it did not end in. No completed workflow task yet: nothing to say, and no worker to ask.
  if (described.status.name === 'TERMINATED' || described.status.name === 'TIMED_OUT') {
    return { status, execution, liveUnavailable: `the run was ${execution.status}: its last state is in the history` };
  }
  if (described.historyLength < 4) return { status, execution, liveUnavailable: 'no worker has run the saga yet' };
  try {
    const live = await deps.temporal.withDeadline(Date.now() + (deps.liveTimeoutMs ?? 3000), () => handle.query(statusQuery));
    return { status, execution, live };
  } catch (err) {
    return { status, execution, liveUnavailable: `the status query was not answered: ${(err as Error).message}` };
  }
}

const { EventType } = temporal.api.enums.v1;

const LOCAL_ACTIVITY_MARKER = 'core_local_activity';

/** What the SDK records of a local activity in its marker: a JSON payload it writes itself. */
function localActivityData(p: temporal.api.common.v1.IPayload | undefined): { activity_type?: string; activity_id?: string; attempt?: number } | undefined {
  if (!p?.data) return undefined;
  try {
    return JSON.parse(Buffer.from(p.data).toString('utf8')) as { activity_type?: string; activity_id?: string; attempt?: number };
  } catch {
    return undefined;
  }
}

/**
 * Each activity the saga scheduled, from its history: attempts and last error of the ones that
 * ended (the history keeps the last attempt), and of those still retrying (the server's pending
 * activities keep the current attempt and the last failure).
 */
async function activitiesOf(client: Client, workflowId: string, described: WorkflowExecutionDescription): Promise<ActivityRecord[]> {
  const history = await client.workflow.getHandle(workflowId, described.runId).fetchHistory();
  const byScheduled = new Map<string, ActivityRecord>();
  const time = (t: temporal.api.history.v1.IHistoryEvent['eventTime']) =>
    t?.seconds != null ? new Date(Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString() : null;
  for (const e of history.events ?? []) {
    const id = String(e.eventId);
    switch (e.eventType) {
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        byScheduled.set(id, {
          activity: e.activityTaskScheduledEventAttributes?.activityType?.name ?? '?',
          activityId: e.activityTaskScheduledEventAttributes?.activityId ?? '?',
          scheduledAt: time(e.eventTime),
          attempts: 0,
          outcome: 'running',
          lastError: null,
        });
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: {
        const a = e.activityTaskStartedEventAttributes;
        const r = byScheduled.get(String(a?.scheduledEventId));
        if (r) {
          r.attempts = a?.attempt ?? r.attempts;
          if (a?.lastFailure?.message) r.lastError = a.lastFailure.message;
        }
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: {
        const r = byScheduled.get(String(e.activityTaskCompletedEventAttributes?.scheduledEventId));
        if (r) r.outcome = 'completed';
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: {
        const a = e.activityTaskFailedEventAttributes;
        const r = byScheduled.get(String(a?.scheduledEventId));
        if (r) Object.assign(r, { outcome: 'failed', lastError: a?.failure?.message ?? r.lastError });
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: {
        const a = e.activityTaskTimedOutEventAttributes;
        const r = byScheduled.get(String(a?.scheduledEventId));
        if (r) Object.assign(r, { outcome: 'timed_out', lastError: a?.failure?.cause?.message ?? a?.failure?.message ?? r.lastError });
        break;
      }
      case EventType.EVENT_TYPE_MARKER_RECORDED: {
        // A local activity (every step of an orderSagaV2, the database steps of an orderSaga): one
        // marker once it ended, with its last attempt; the attempts before it retried in the worker.
        const m = e.markerRecordedEventAttributes;
        const data = m?.markerName === LOCAL_ACTIVITY_MARKER ? localActivityData(m.details?.data?.payloads?.[0]) : undefined;
        if (!data) break;
        byScheduled.set(id, {
          activity: data.activity_type ?? '?',
          activityId: data.activity_id ?? '?',
          scheduledAt: time(e.eventTime),
          attempts: data.attempt ?? 1,
          outcome: m?.failure ? 'failed' : 'completed',
          lastError: m?.failure?.cause?.message ?? m?.failure?.message ?? null,
        });
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: {
        const r = byScheduled.get(String(e.activityTaskCanceledEventAttributes?.scheduledEventId));
        if (r) r.outcome = 'canceled';
        break;
      }
    }
  }
  const records = [...byScheduled.values()];
  for (const p of described.raw.pendingActivities ?? []) {
    const r = records.find((x) => x.activityId === p.activityId && x.outcome === 'running');
    if (!r) continue;
    r.attempts = p.attempt ?? r.attempts;
    if (p.lastFailure?.message) r.lastError = p.lastFailure.message;
  }
  return records;
}

/** The order's rows in sagaflow's own books: the provider's charge, the carrier's shipment, the assessment, the stock held. */
async function referencesOf(db: Db, orderId: string): Promise<SagaDetail['references']> {
  const iso = (d: Date) => new Date(d).toISOString();
  const [payments, shipments, fraud, reservations] = await Promise.all([
    db.query(`SELECT idempotency_key, status, provider_charge_id, amount_minor, currency, updated_at FROM payments WHERE order_id = $1 ORDER BY created_at`, [orderId]),
    db.query(`SELECT idempotency_key, status, carrier_shipment_id, tracking_number, updated_at FROM shipments WHERE order_id = $1 ORDER BY created_at`, [orderId]),
    db.query(`SELECT decision, score, status, updated_at FROM fraud_checks WHERE order_id = $1`, [orderId]),
    db.query(`SELECT sku, quantity, status, updated_at FROM reservations WHERE order_id = $1 ORDER BY sku`, [orderId]),
  ]);
  return {
    payments: payments.rows.map((r) => ({
      idempotencyKey: r.idempotency_key,
      status: r.status,
      providerChargeId: r.provider_charge_id,
      amountMinor: Number(r.amount_minor),
      currency: r.currency,
      updatedAt: iso(r.updated_at),
    })),
    shipments: shipments.rows.map((r) => ({
      idempotencyKey: r.idempotency_key,
      status: r.status,
      carrierShipmentId: r.carrier_shipment_id,
      trackingNumber: r.tracking_number,
      updatedAt: iso(r.updated_at),
    })),
    fraudChecks: fraud.rows.map((r) => ({ decision: r.decision, score: r.score, status: r.status, updatedAt: iso(r.updated_at) })),
    reservations: reservations.rows.map((r) => ({ sku: r.sku, quantity: r.quantity, status: r.status, updatedAt: iso(r.updated_at) })),
  };
}

/** A duration as operators write it: 90s, 15m, 2h, 3d. */
export function parseDuration(text: string): number {
  const m = /^(\d{1,6})(s|m|h|d)$/.exec(text);
  if (!m) throw new OperatorError(`"${text}" is not a duration: a whole number and s, m, h or d (15m, 2h)`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** An age as operators read it: the largest whole unit (45s, 12m, 3h, 2d). */
export function formatAge(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** One line per saga: order, workflow, order status, saga status, age, client, step in flight. */
export function sagaLine(s: SagaSummary): string {
  const client = s.client ? (s.client.name ?? s.client.id) : '-';
  return [s.orderId, s.workflowId, s.orderStatus, s.sagaStatus, formatAge(s.ageMs), client, s.currentStep ?? '-'].join('\t');
}

/** `sagas show` for a person: the order, the saga, its activities, its ledger and its references. */
export function sagaDetailText(d: SagaDetail): string[] {
  const o = d.order;
  const lines = [
    `order ${o.id}  ${o.status}  ${Number(o.amount_minor)} ${o.currency} (minor units)  created ${new Date(o.created_at).toISOString()}`,
    `  client: ${o.client_id ? `${o.client_name ?? '?'} (${o.client_id})` : '- (started without the API)'}  customer: ${o.customer_id}`,
    `  items: ${o.items.map((i) => `${i.sku} x${i.quantity}`).join(', ')}`,
  ];
  if (o.failure_reason) lines.push(`  failure reason: ${o.failure_reason}`);
  if (o.compensation_failures?.length) lines.push(`  compensation failures: ${JSON.stringify(o.compensation_failures)}`);
  lines.push(`saga ${d.workflowId}  ${d.saga.status}`);
  const x = d.saga.execution;
  if (x) lines.push(`  run ${x.runId}  ${x.status}  started ${x.startTime}${x.closeTime ? `  closed ${x.closeTime}` : ''}  ${x.historyLength} events  queue ${x.taskQueue}`);
  lines.push(`  Temporal UI: ${d.temporalUi ?? 'set TEMPORAL_UI_URL to print it here'}`);
  const live = d.saga.live;
  if (live) {
    lines.push(`  phase ${live.phase}; step in flight: ${live.currentStep ?? '-'}; done: ${live.completedSteps.join(', ') || '-'}`);
    if (live.failure) lines.push(`  failure: ${live.failure.type}: ${live.failure.message}`);
    for (const c of live.compensations) lines.push(`  undo ${c.step}: ${c.status}, ${c.attempts} attempt(s)${c.lastError ? `; last error: ${c.lastError}` : ''}`);
    for (const r of live.retries) lines.push(`  retrying ${r.step}: ${r.attempts} attempt(s)${r.lastError ? `; last error: ${r.lastError}` : ''}`);
  } else if (d.saga.liveUnavailable) {
    lines.push(`  (no live status: ${d.saga.liveUnavailable})`);
  }
  lines.push('activities (from the history):');
  if (!d.activities.length) lines.push('  -');
  for (const a of d.activities) {
    lines.push(`  ${a.activity}: ${a.outcome}, ${a.attempts} attempt(s)${a.lastError ? `; last error: ${a.lastError}` : ''}`);
  }
  lines.push('step ledger:');
  if (!d.ledger.length) lines.push('  -');
  for (const l of d.ledger) {
    const error = l.error ? `; error: ${l.error.type}: ${l.error.message}` : '';
    lines.push(`  ${l.key}: ${l.state}${l.undone ? ` (was ${l.undone})` : ''}${error}`);
  }
  const r = d.references;
  lines.push('references:');
  for (const p of r.payments) lines.push(`  payment ${p.status}: provider charge ${p.providerChargeId ?? '-'} (${p.idempotencyKey})`);
  for (const s of r.shipments) lines.push(`  shipment ${s.status}: carrier shipment ${s.carrierShipmentId ?? '-'}, tracking ${s.trackingNumber ?? '-'} (${s.idempotencyKey})`);
  for (const f of r.fraudChecks) lines.push(`  fraud check ${f.status}: ${f.decision}, score ${f.score}`);
  for (const v of r.reservations) lines.push(`  reservation ${v.status}: ${v.sku} x${v.quantity}`);
  if (!r.payments.length && !r.shipments.length && !r.fraudChecks.length && !r.reservations.length) lines.push('  -');
  return lines;
}

/** A cursor given to `sagas list` that is not one of its own: the operator's mistake, one line. */
export function cursorProblem(err: unknown): OperatorError | undefined {
  return err instanceof InvalidCursor ? new OperatorError(`--cursor: ${err.message}`) : undefined;
}

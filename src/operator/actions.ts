/**
 * What operators do to sagas, shared by `sagaflow sagas` (bin/sagas.ts) and the admin API
 * (/admin/sagas): rerun a held saga's failed compensations, settle them by hand, cancel or
 * terminate sagas in bulk. Every action is written to `operator_actions`, one row per saga it
 * touches, before it acts (outcome NULL) and finished after it (the outcome as JSON), so what an
 * operator asked survives a crash halfway.
 *
 * A refusal (an unknown order, a saga that cannot do what is asked) is an OperatorError: one line,
 * exit 1 on the command line, a 404 or 409 on the admin API.
 */
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client, type WorkflowExecutionInfo } from '@temporalio/client';
// The saga helper's operator updates, answered by every saga held for an operator (toolkit contract, not workflow code).
import type { Db } from '../db/pool';
import { ORDER_COLUMNS, type OrderRow } from '../orders/repository';
import { checkedResolution, resolveCompensationFailures, type CompensationFailureEntry } from '../orders/compensation-failures';
import {
  cancelUpdate,
  ORDER_SAGA_TYPES_QUERY,
  resolveUpdate,
  retryCompensationUpdate,
  type RetryCompensationResponse,
} from '../../workflows/order/definitions';
import { orderWorkflowId } from '../../workflows/order/ids';
import { listSagas, OperatorError, type SagaListFilter } from './sagas';
import { MAX_PAGE } from '../orders/list';

export const OPERATOR_ACTIONS = ['retry-compensation', 'resolve', 'cancel', 'terminate'] as const;
export type OperatorAction = (typeof OPERATOR_ACTIONS)[number];

/** At most this many sagas per bulk call (and the default): run it again for the rest. */
export const BULK_LIMIT_MAX = 500;

/** How long one saga may take to answer an update (a retry runs its compensations inside it). */
const DEFAULT_UPDATE_TIMEOUT_MS = 60_000;

export interface ActionDeps {
  client: Client;
  db: Db;
  /** How long a saga may take to answer, per saga. Default 60 s. */
  timeoutMs?: number;
}

interface ActionRow {
  actor: string;
  action: OperatorAction;
  orderId?: string;
  workflowId?: string;
  selection?: unknown;
  dryRun?: boolean;
  note?: string;
}

/** Writes the action as asked, before it acts; returns its row's ID. */
async function begin(db: Db, row: ActionRow): Promise<string> {
  const res = await db.query<{ id: string }>(
    `INSERT INTO operator_actions (actor, action, order_id, workflow_id, selection, dry_run, note)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) RETURNING id`,
    [row.actor, row.action, row.orderId ?? null, row.workflowId ?? null, row.selection === undefined ? null : JSON.stringify(row.selection), row.dryRun ?? false, row.note ?? null],
  );
  return res.rows[0]!.id;
}

/** Writes how the action ended. */
async function finish(db: Db, id: string, outcome: Record<string, unknown>): Promise<void> {
  await db.query('UPDATE operator_actions SET outcome = $2::jsonb, finished_at = now() WHERE id = $1', [id, JSON.stringify(outcome)]);
}

/** Runs `act` between its row's two writes: the outcome {ok: true, ...answer}, or {ok: false, error} and the error rethrown. */
async function recorded<T extends object>(db: Db, row: ActionRow, act: () => Promise<T>): Promise<T> {
  const id = await begin(db, row);
  let answer: T;
  try {
    answer = await act();
  } catch (err) {
    await finish(db, id, { ok: false, error: (err as Error).message });
    throw err;
  }
  await finish(db, id, { ok: true, ...answer });
  return answer;
}

/** Who acts and why, as they may be stored: refused, naming the field, when empty or too long. */
function actor(by: string, note: string | undefined): { by: string; note?: string } {
  try {
    const r = checkedResolution({ how: 'manual', by, note });
    return { by: r.by, ...(r.note !== undefined ? { note: r.note } : {}) };
  } catch (err) {
    if (err instanceof RangeError) throw new OperatorError(err.message);
    throw err;
  }
}

/** The order named does not exist: a 404 on the admin API. */
export class NoSuchOrder extends OperatorError {}

async function knownOrder(db: Db, orderId: string): Promise<OrderRow & { compensation_failures: CompensationFailureEntry[] | null }> {
  // The order and its compensation failures in one read.
  const row = /^[A-Za-z0-9_-]{1,64}$/.test(orderId)
    ? (
        await db.query<OrderRow & { compensation_failures: CompensationFailureEntry[] | null }>(
          `SELECT ${ORDER_COLUMNS}, o.compensation_failures FROM orders o WHERE o.id = $1`,
          [orderId],
        )
      ).rows[0]
    : undefined;
  if (!row) throw new NoSuchOrder(`no order "${orderId}"`);
  return row;
}

const unresolved = (row: { compensation_failures: CompensationFailureEntry[] | null }) => (row.compensation_failures ?? []).filter((e) => !e.resolution);

/** The saga's execution status as Temporal describes it (RUNNING, COMPLETED, FAILED, TERMINATED, ...), or undefined if it never started. */
async function executionStatus(client: Client, workflowId: string): Promise<string | undefined> {
  try {
    return (await client.workflow.getHandle(workflowId).describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

/** An update to a saga, bounded in time; the saga's refusal and no answer in time are OperatorErrors naming the order. */
async function sagaUpdate<R>(deps: ActionDeps, orderId: string, what: string, send: () => Promise<R>): Promise<R> {
  const timeoutMs = deps.timeoutMs ?? DEFAULT_UPDATE_TIMEOUT_MS;
  try {
    return await deps.client.withDeadline(Date.now() + timeoutMs, send);
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      throw new OperatorError(`the saga of order ${orderId} refused the ${what}: ${err.cause?.message ?? err.message}`);
    }
    if (err instanceof WorkflowNotFoundError) throw new OperatorError(`the saga of order ${orderId} closed before it could take the ${what}`);
    const code = (err as { code?: number }).code;
    if (code === 4 /* DEADLINE_EXCEEDED */ || /deadline/i.test((err as Error).message ?? '')) {
      throw new OperatorError(
        `no answer from the saga of order ${orderId} within ${Math.round(timeoutMs / 1000)} s (does a worker poll its task queue?); ` +
          `it may still act: see \`sagaflow sagas show ${orderId}\``,
      );
    }
    throw err;
  }
}

export interface RetryCompensationRequest {
  orderId: string;
  /** Who acts: `cli:ada`, `admin:ops-team`. */
  by: string;
  note?: string;
}

/**
 * Reruns the failed compensations of a saga held for an operator (a compensation failed for good,
 * and the cause is fixed now), under their own idempotency keys, and answers which succeeded and
 * which failed again. Refused for an unknown order, a saga never started or closed (nothing can
 * rerun its compensations: settle them by hand with `resolve`), and a saga not held (with its reason).
 */
export async function retryCompensation(deps: ActionDeps & RetryCompensationRequest): Promise<RetryCompensationResponse & { orderId: string; workflowId: string }> {
  const who = actor(deps.by, deps.note);
  const order = await knownOrder(deps.db, deps.orderId);
  const workflowId = orderWorkflowId(order.id);
  return recorded(deps.db, { actor: who.by, action: 'retry-compensation', orderId: order.id, workflowId, note: who.note }, async () => {
    const status = await executionStatus(deps.client, workflowId);
    if (status === undefined) throw new OperatorError(`the saga of order ${order.id} was never started: it has no compensation to rerun`);
    if (status !== 'RUNNING') {
      if (!unresolved(order).length) {
        throw new OperatorError(`the saga of order ${order.id} closed (${status.toLowerCase()}) with no compensation failing: there is nothing to retry`);
      }
      throw new OperatorError(
        `the saga of order ${order.id} closed (${status.toLowerCase()}) before it could be held: nothing can rerun its compensations; ` +
          'settle it by hand with `sagaflow sagas resolve`',
      );
    }
    const handle = deps.client.workflow.getHandle(workflowId);
    const answer = await sagaUpdate(deps, order.id, 'retry of its compensations', () => handle.executeUpdate(retryCompensationUpdate, { args: [who] }));
    return { orderId: order.id, workflowId, ...answer };
  });
}

export interface ResolveRequest {
  orderId: string;
  by: string;
  /** Why it is settled, and how (required): "refunded by hand, ticket 123". */
  note: string;
}

export interface ResolveResult {
  orderId: string;
  workflowId: string;
  /** The compensations settled by hand. */
  steps: string[];
  /** Who wrote it: the held saga itself (its own activity), or this call on the order's row (a closed saga). */
  via: 'saga' | 'database';
}

/**
 * Records that the order's failed compensations were settled by hand (who, why). A saga held for
 * an operator records it itself and ends; for a closed saga (one from before the hold, a
 * terminated one) it is written on the order directly. The order's `compensation_resolved`
 * events follow from the outbox. Refused for an unknown order, without a note, and when nothing
 * is left unresolved.
 */
export async function resolve(deps: ActionDeps & ResolveRequest): Promise<ResolveResult> {
  if (typeof deps.note !== 'string' || !deps.note.trim()) throw new OperatorError('a note is required: what was done by hand, and where (a ticket)');
  const who = actor(deps.by, deps.note);
  const order = await knownOrder(deps.db, deps.orderId);
  const workflowId = orderWorkflowId(order.id);
  return recorded(deps.db, { actor: who.by, action: 'resolve', orderId: order.id, workflowId, note: who.note }, async () => {
    const status = await executionStatus(deps.client, workflowId);
    if (status === 'RUNNING') {
      const handle = deps.client.workflow.getHandle(workflowId);
      const answer = await sagaUpdate(deps, order.id, 'resolution', () => handle.executeUpdate(resolveUpdate, { args: [{ by: who.by, note: who.note }] }));
      return { orderId: order.id, workflowId, steps: answer.steps, via: 'saga' as const };
    }
    const nothing = () =>
      new OperatorError(`order ${order.id} has no unresolved compensation failure: nothing to resolve${order.compensation_failures?.length ? ' (every one is resolved already)' : ''}`);
    if (!unresolved(order).length) throw nothing();
    const steps = await resolveCompensationFailures(deps.db, { orderId: order.id, workflowId }, { how: 'manual', by: who.by, note: who.note });
    if (!steps.length) throw nothing();
    return { orderId: order.id, workflowId, steps, via: 'database' as const };
  });
}

/** Which sagas a bulk action touches: open order sagas matching a visibility query and/or the filters of `sagas list`. */
export interface SagaSelection {
  /** A Temporal visibility query (`SagaStatus = 'running' AND StartTime < '2025-01-01T00:00:00Z'`), ANDed with the open order sagas. */
  query?: string;
  /** The filters of `sagas list` (PostgreSQL, visibility, the live step). */
  filters?: SagaListFilter;
}

export interface BulkRequest {
  by: string;
  selection: SagaSelection;
  /** List what it would touch, touch nothing (one operator_actions row, dry_run true). */
  dryRun?: boolean;
  /** At most this many sagas (1 to BULK_LIMIT_MAX, default BULK_LIMIT_MAX). */
  limit?: number;
  /** Why: the cancel's reason, the termination's reason. */
  reason?: string;
}

export interface SelectedSaga {
  orderId: string;
  workflowId: string;
}

export interface BulkResult {
  action: 'cancel' | 'terminate';
  dryRun: boolean;
  /** The sagas selected (at most `limit`), newest first. */
  selected: SelectedSaga[];
  /** More sagas match than `limit`: run it again for the rest. */
  more: boolean;
  /** What became of each (none on a dry run). */
  results: (SelectedSaga & { outcome: 'accepted' | 'refused' | 'terminated' | 'failed'; reason?: string })[];
}

/** The open order sagas, always; an operator's query only narrows them. */
const OPEN_ORDER_SAGAS = `${ORDER_SAGA_TYPES_QUERY} AND ExecutionStatus = 'Running'`;

function checkedQuery(query: string | undefined): string | undefined {
  if (query === undefined) return undefined;
  const q = query.trim();
  if (!q) throw new OperatorError('query: empty');
  if (q.length > 2000) throw new OperatorError('query: at most 2000 characters');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(q)) throw new OperatorError('query: no control characters');
  if (/\border\s+by\b/i.test(q)) throw new OperatorError('query: a filter only, without ORDER BY');
  return q;
}

const hasFilters = (f: SagaListFilter | undefined) => f !== undefined && Object.values(f).some((v) => v !== undefined);

/** The open order sagas of a visibility query, in Temporal's order (newest first), up to `max`. */
async function openSagas(client: Client, query: string, max: number): Promise<WorkflowExecutionInfo[]> {
  const found: WorkflowExecutionInfo[] = [];
  try {
    for await (const execution of client.workflow.list({ query, pageSize: Math.min(max, 1000) })) {
      found.push(execution);
      if (found.length >= max) break;
    }
  } catch (err) {
    const code = (err as { code?: number }).code;
    // INVALID_ARGUMENT: a query visibility cannot parse, said as the server words it.
    if (code === 3 || /invalid query|invalid argument/i.test((err as Error).message ?? '')) throw new OperatorError(`query: ${(err as Error).message}`);
    throw err;
  }
  return found;
}

/**
 * The sagas a selection names, at most `limit` and whether more match. With filters, the orders
 * `sagas list` would list, kept where the saga is open (and matches the query, with one); with a
 * query alone, the open order sagas it matches. A selection of nothing at all is refused: no call
 * touches every saga.
 */
export async function selectSagas(deps: Pick<ActionDeps, 'client' | 'db'> & { namespace?: string }, selection: SagaSelection, limit: number): Promise<{ selected: SelectedSaga[]; more: boolean }> {
  const query = checkedQuery(selection.query);
  if (query === undefined && !hasFilters(selection.filters)) {
    throw new OperatorError('select the sagas: a query, filters (status, saga status, step, older than, client), or both; nothing selects every saga');
  }
  const narrowed = query === undefined ? OPEN_ORDER_SAGAS : `${OPEN_ORDER_SAGAS} AND (${query})`;
  const toSelected = (e: WorkflowExecutionInfo): SelectedSaga => ({ workflowId: e.workflowId, orderId: e.workflowId.replace(/^order-/, '') });
  if (!hasFilters(selection.filters)) {
    const open = await openSagas(deps.client, narrowed, limit + 1);
    return { selected: open.slice(0, limit).map(toSelected), more: open.length > limit };
  }
  const selected: SelectedSaga[] = [];
  const operatorDeps = { db: deps.db, temporal: deps.client, namespace: deps.namespace ?? deps.client.options.namespace };
  let cursor: string | undefined;
  for (;;) {
    const page = await listSagas(operatorDeps, selection.filters!, { limit: MAX_PAGE, cursor });
    const ids = page.sagas.map((s) => s.workflowId);
    if (ids.length) {
      // Workflow IDs are order-<id> with [A-Za-z0-9_-] IDs: nothing to escape in the quotes.
      const open = await openSagas(deps.client, `${narrowed} AND WorkflowId IN (${ids.map((id) => `'${id.replace(/'/g, '')}'`).join(', ')})`, ids.length);
      const isOpen = new Set(open.map((e) => e.workflowId));
      for (const s of page.sagas) {
        if (!isOpen.has(s.workflowId)) continue;
        if (selected.length === limit) return { selected, more: true };
        selected.push({ orderId: s.orderId, workflowId: s.workflowId });
      }
    }
    if (!page.nextCursor) return { selected, more: false };
    cursor = page.nextCursor;
  }
}

function checkedLimit(limit: number | undefined): number {
  const n = limit ?? BULK_LIMIT_MAX;
  if (!Number.isInteger(n) || n < 1 || n > BULK_LIMIT_MAX) throw new OperatorError(`limit: 1 to ${BULK_LIMIT_MAX}, not ${limit}`);
  return n;
}

/** Runs `act` on each saga, a few at a time, each between its own row's two writes. */
async function eachSaga(
  deps: ActionDeps,
  row: Omit<ActionRow, 'orderId' | 'workflowId'>,
  sagas: SelectedSaga[],
  act: (s: SelectedSaga) => Promise<{ outcome: BulkResult['results'][number]['outcome']; reason?: string }>,
): Promise<BulkResult['results']> {
  const results: BulkResult['results'] = new Array(sagas.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < sagas.length; i = next++) {
      const s = sagas[i]!;
      const id = await begin(deps.db, { ...row, orderId: s.orderId, workflowId: s.workflowId });
      let r: { outcome: BulkResult['results'][number]['outcome']; reason?: string };
      try {
        r = await act(s);
      } catch (err) {
        r = { outcome: 'failed', reason: (err as Error).message };
      }
      await finish(deps.db, id, { ok: r.outcome === 'accepted' || r.outcome === 'terminated', ...r });
      results[i] = { ...s, ...r };
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, sagas.length) }, lane));
  return results;
}

async function bulk(
  action: 'cancel' | 'terminate',
  deps: ActionDeps & BulkRequest & { namespace?: string },
  act: (s: SelectedSaga, who: { by: string; note?: string }) => Promise<{ outcome: BulkResult['results'][number]['outcome']; reason?: string }>,
): Promise<BulkResult> {
  const who = actor(deps.by, deps.reason);
  const limit = checkedLimit(deps.limit);
  const { selected, more } = await selectSagas(deps, deps.selection, limit);
  const selection = { ...(deps.selection.query !== undefined ? { query: deps.selection.query } : {}), ...(hasFilters(deps.selection.filters) ? { filters: deps.selection.filters } : {}), limit };
  const row = { actor: who.by, action, selection, note: who.note };
  if (deps.dryRun) {
    const id = await begin(deps.db, { ...row, dryRun: true });
    await finish(deps.db, id, { ok: true, wouldTouch: selected, more });
    return { action, dryRun: true, selected, more, results: [] };
  }
  const results = await eachSaga(deps, row, selected, (s) => act(s, who));
  return { action, dryRun: false, selected, more, results };
}

/**
 * Cancels the selected sagas with their own cancel update, as POST /orders/{id}/cancel does: each
 * accepts before its pivot (and unwinds: its compensations run) or refuses after it, with its reason.
 */
export async function cancelSagas(deps: ActionDeps & BulkRequest & { namespace?: string }): Promise<BulkResult> {
  return bulk('cancel', deps, async (s, who) => {
    const handle = deps.client.workflow.getHandle(s.workflowId);
    try {
      await sagaUpdate(deps, s.orderId, 'cancel', () => handle.executeUpdate(cancelUpdate, { args: [{ reason: who.note ?? `cancelled by an operator (${who.by})` }] }));
      return { outcome: 'accepted' };
    } catch (err) {
      if (err instanceof OperatorError) return { outcome: 'refused', reason: err.message };
      throw err;
    }
  });
}

/**
 * Terminates the selected sagas. A terminated saga runs nothing more, no compensation either:
 * what its steps did stays done (a charge, held stock, a label). Refused without `confirm`; after
 * it, each order needs `sagas show`, then `sagas resolve` or a fix by hand (docs/runbook.md).
 */
export async function terminateSagas(deps: ActionDeps & BulkRequest & { namespace?: string; confirm?: boolean }): Promise<BulkResult> {
  if (!deps.dryRun && deps.confirm !== true) {
    throw new OperatorError('terminate runs no compensation: what the sagas did stays done. Confirm it (--yes, "confirm": true), or look first with a dry run');
  }
  return bulk('terminate', deps, async (s, who) => {
    try {
      await deps.client.workflow.getHandle(s.workflowId).terminate(`${who.note ?? 'terminated by an operator'} (${who.by})`);
      return { outcome: 'terminated' };
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return { outcome: 'refused', reason: 'the saga closed meanwhile' };
      throw err;
    }
  });
}

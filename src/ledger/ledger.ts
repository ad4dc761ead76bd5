import { ApplicationFailure } from '@temporalio/common';
import type { Db, Tx } from '../db/pool';
import { inTransaction as runInTransaction, isPermanentDataError } from '../db/pool';
import { FailureType } from '../../workflows/failures';
import { fingerprint } from './fingerprint';

/**
 * The idempotency ledger. One row per step key, `<workflowId>/<step>` forward
 * and `<workflowId>/<step>/undo` for its compensation. A compensation leaves the
 * forward row in state 'cancelled' (a tombstone), so a forward attempt that
 * lands after it applies nothing.
 */

export type StepState = 'pending' | 'completed' | 'failed' | 'cancelled';

export interface StepRef {
  key: string;
  step: string;
  /** Fingerprinted; the same key with another input is a conflict. */
  input: unknown;
}

export interface UndoRef extends StepRef {
  /** The forward key this compensation undoes. */
  forwardKey: string;
}

/** Observes the ledger, e.g. to count dedupe hits; every member optional. */
export interface LedgerHooks {
  /** A duplicate execution was answered from the recorded outcome. */
  onReplay?(step: string, key: string): void;
}

export interface LedgerRow {
  key: string;
  workflow_id: string;
  step: string;
  fingerprint: string | null;
  state: StepState;
  result: unknown;
  error: RecordedError | null;
}

interface RecordedError {
  type: string;
  message: string;
  details?: unknown[];
}

export function forwardKey(workflowId: string, step: string): string {
  return `${workflowId}/${step}`;
}

export function undoKey(workflowId: string, step: string): string {
  return `${workflowId}/${step}/undo`;
}

/** Checks the key names this step and returns the workflow ID it belongs to. */
export function workflowIdOf(key: string, step: string, undo = false): string {
  const suffix = undo ? `/${step}/undo` : `/${step}`;
  if (!key.endsWith(suffix) || key.length === suffix.length) {
    throw ApplicationFailure.nonRetryable(
      `step key "${key}" does not end with "${suffix}"`,
      FailureType.InvalidInput,
    );
  }
  return key.slice(0, -suffix.length);
}

/** An undo may only ever tombstone and reverse its own saga's forward step. */
function undoWorkflowId(ref: UndoRef): string {
  const workflowId = workflowIdOf(ref.key, ref.step, true);
  if (workflowIdOf(ref.forwardKey, ref.step) !== workflowId) {
    throw ApplicationFailure.nonRetryable(`undo key ${ref.key} does not match ${ref.forwardKey}`, FailureType.InvalidInput);
  }
  return workflowId;
}

/**
 * The ledger's transactions. Data PostgreSQL refuses (class 22 or 23) is refused
 * the same way on every attempt, so it leaves as a non-retryable failure: a
 * forward step fails (and is recorded), a compensation is reported as failed,
 * instead of being retried without end.
 */
async function inTransaction<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  try {
    return await runInTransaction(db, fn);
  } catch (err) {
    if (!isPermanentDataError(err)) throw err;
    const e = err as { code: string; message?: string };
    throw ApplicationFailure.create({
      message: `PostgreSQL refused the data: ${e.message ?? 'data error'} (SQLSTATE ${e.code})`,
      type: FailureType.DataRejected,
      nonRetryable: true,
    });
  }
}

const SELECT_ROW = `SELECT key, workflow_id, step, fingerprint, state, result, error
                      FROM step_ledger WHERE key = $1`;

async function claim(tx: Tx, ref: StepRef, workflowId: string, fp: string): Promise<LedgerRow | null> {
  // The insert is the lock: a concurrent duplicate waits here until this
  // transaction ends, then finds the committed row and replays it.
  const inserted = await tx.query(
    `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state)
     VALUES ($1, $2, $3, $4, 'pending')
     ON CONFLICT (key) DO NOTHING RETURNING key`,
    [ref.key, workflowId, ref.step, fp],
  );
  if (inserted.rowCount === 1) return null;
  const existing = await tx.query<LedgerRow>(`${SELECT_ROW} FOR UPDATE`, [ref.key]);
  const row = existing.rows[0];
  if (!row) throw new Error(`ledger row ${ref.key} vanished`);
  return row;
}

function conflict(ref: StepRef): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `idempotency key ${ref.key} was used with a different input`,
    FailureType.IdempotencyConflict,
  );
}

function cancelled(key: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `step ${key} was compensated; this late attempt applies nothing`,
    FailureType.StepCancelled,
  );
}

/** Returns the recorded result or rethrows the recorded business failure. */
function replay<T>(row: LedgerRow, ref: StepRef, fp: string, hooks?: LedgerHooks): T {
  if (row.state === 'cancelled') throw cancelled(ref.key);
  if (row.fingerprint !== null && row.fingerprint !== fp) throw conflict(ref);
  hooks?.onReplay?.(ref.step, ref.key);
  if (row.state === 'failed') {
    const e = row.error ?? { type: 'Unknown', message: 'failed' };
    throw ApplicationFailure.create({ message: e.message, type: e.type, nonRetryable: true, details: e.details });
  }
  return row.result as T;
}

/** A business failure is one a retry cannot change: it is recorded and replayed. */
export function asBusinessFailure(err: unknown): RecordedError | null {
  // Matched by shape, not class: failures may come from another module registry.
  const f = err as Partial<ApplicationFailure> | null;
  if (f && typeof f.type === 'string' && f.nonRetryable === true) {
    return { type: f.type, message: f.message ?? '', details: f.details ? [...f.details] : undefined };
  }
  return null;
}

async function recordFailure(db: Db, ref: StepRef, workflowId: string, fp: string, failure: RecordedError) {
  const res = await db.query(
    `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state, error)
     VALUES ($1, $2, $3, $4, 'failed', $5)
     ON CONFLICT (key) DO NOTHING RETURNING key`,
    [ref.key, workflowId, ref.step, fp, failure],
  );
  return res.rowCount === 1;
}

/**
 * A local step: the effect and its ledger record commit in one transaction.
 * Round trips on first execution: BEGIN, claim, the effect's statements,
 * record, COMMIT. A duplicate makes BEGIN, claim, read, COMMIT and applies nothing.
 */
export async function runLocalStep<T>(
  db: Db,
  ref: StepRef,
  effect: (tx: Tx) => Promise<T>,
  hooks?: LedgerHooks,
): Promise<T> {
  const workflowId = workflowIdOf(ref.key, ref.step);
  const fp = fingerprint(ref.input);
  let replayed = false;
  try {
    return await inTransaction(db, async (tx) => {
      const existing = await claim(tx, ref, workflowId, fp);
      replayed = existing !== null;
      if (existing) return replay<T>(existing, ref, fp, hooks);
      const result = await effect(tx);
      await tx.query(
        `UPDATE step_ledger SET state = 'completed', result = $2, updated_at = now()
          WHERE key = $1 AND state = 'pending'`,
        [ref.key, JSON.stringify(result ?? null)],
      );
      return result;
    });
  } catch (err) {
    const failure = asBusinessFailure(err);
    // The transaction rolled back, effect and claim alike; record the business
    // failure on its own so a duplicate replays the same answer (a replay already is that answer).
    if (!replayed && failure && failure.type !== FailureType.StepCancelled && failure.type !== FailureType.IdempotencyConflict) {
      if (!(await recordFailure(db, ref, workflowId, fp, failure))) {
        const row = (await db.query<LedgerRow>(SELECT_ROW, [ref.key])).rows[0];
        if (row) return replay<T>(row, ref, fp, hooks);
      }
    }
    throw err;
  }
}

/**
 * Tombstones the forward key inside tx and returns what it was before:
 * null if the forward step never ran (it now never will).
 */
async function tombstone(tx: Tx, key: string, workflowId: string, step: string): Promise<LedgerRow | null> {
  for (;;) {
    const locked = await tx.query<LedgerRow>(`${SELECT_ROW} FOR UPDATE`, [key]);
    const prev = locked.rows[0];
    if (prev) {
      if (prev.state !== 'cancelled') {
        await tx.query(`UPDATE step_ledger SET state = 'cancelled', updated_at = now() WHERE key = $1`, [key]);
      }
      return prev;
    }
    const inserted = await tx.query(
      `INSERT INTO step_ledger (key, workflow_id, step, state) VALUES ($1, $2, $3, 'cancelled')
       ON CONFLICT (key) DO NOTHING RETURNING key`,
      [key, workflowId, step],
    );
    if (inserted.rowCount === 1) return null;
    // A forward attempt committed between our read and insert: lock it and undo it.
  }
}

/**
 * A local compensation: tombstones the forward step and undoes its effect, if
 * it had one, in one transaction with the undo's own ledger record.
 */
export async function runLocalUndo<T>(
  db: Db,
  ref: UndoRef,
  undo: (tx: Tx, forward: LedgerRow | null) => Promise<T>,
  hooks?: LedgerHooks,
): Promise<T> {
  const workflowId = undoWorkflowId(ref);
  const fp = fingerprint(ref.input);
  return inTransaction(db, async (tx) => {
    const existing = await claim(tx, ref, workflowId, fp);
    if (existing) return replay<T>(existing, ref, fp, hooks);
    const prev = await tombstone(tx, ref.forwardKey, workflowId, ref.step);
    const result = await undo(tx, prev);
    await tx.query(
      `UPDATE step_ledger SET state = 'completed', result = $2, updated_at = now() WHERE key = $1`,
      [ref.key, JSON.stringify(result ?? null)],
    );
    return result;
  });
}

export type CallOutcome<R> = { ok: true; result: R } | { ok: false; failure: RecordedError };

export interface ExternalStep<R> {
  /** Writes the local 'pending' record in the claim transaction. */
  prepare(tx: Tx): Promise<void>;
  /** Calls the external service with the step key as its idempotency key. */
  call(): Promise<CallOutcome<R>>;
  /** Confirms the local record in the same transaction as the ledger. */
  confirm(tx: Tx, outcome: CallOutcome<R>): Promise<void>;
}

/**
 * A step whose effect lives in another service. The local record moves
 * pending → call → confirmed, each write conditional, so a crash between any
 * two is safe to retry: the service dedupes the call by the step key.
 */
export async function runExternalStep<R>(
  db: Db,
  ref: StepRef,
  step: ExternalStep<R>,
  hooks?: LedgerHooks,
): Promise<R> {
  const workflowId = workflowIdOf(ref.key, ref.step);
  const fp = fingerprint(ref.input);
  const recorded = await inTransaction(db, async (tx) => {
    const existing = await claim(tx, ref, workflowId, fp);
    if (!existing) {
      await step.prepare(tx);
      return null;
    }
    if (existing.state === 'pending') {
      if (existing.fingerprint !== fp) throw conflict(ref);
      return null; // an earlier attempt died mid-call; calling again is safe
    }
    return existing;
  });
  if (recorded) return replay<R>(recorded, ref, fp, hooks);

  const outcome = await step.call();
  const settled = await inTransaction(db, async (tx): Promise<CallOutcome<R>> => {
    const updated = await tx.query(
      `UPDATE step_ledger SET state = $2, result = $3, error = $4, updated_at = now()
        WHERE key = $1 AND state = 'pending' RETURNING key`,
      [
        ref.key,
        outcome.ok ? 'completed' : 'failed',
        outcome.ok ? JSON.stringify(outcome.result ?? null) : null,
        outcome.ok ? null : outcome.failure,
      ],
    );
    if (updated.rowCount === 1) {
      await step.confirm(tx, outcome);
      return outcome;
    }
    // Someone else settled the key first: a concurrent duplicate, or a compensation.
    const row = (await tx.query<LedgerRow>(SELECT_ROW, [ref.key])).rows[0];
    if (!row) throw new Error(`ledger row ${ref.key} vanished`);
    return { ok: true, result: replay<R>(row, ref, fp, hooks) };
  });
  // A recorded business failure is thrown only after its record has committed.
  if (settled.ok) return settled.result;
  const f = settled.failure;
  throw ApplicationFailure.create({ message: f.message, type: f.type, nonRetryable: true, details: f.details });
}

export interface ExternalUndo<R> {
  call(): Promise<R>;
  /** Settles the local record from the service's answer, in the ledger's transaction. */
  confirm(tx: Tx, result: R, forward: LedgerRow | null): Promise<void>;
}

/**
 * Compensation of an external step: tombstone locally first (so a late forward
 * attempt can no longer confirm), then ask the service to reverse or tombstone
 * the key, then record the undo.
 */
export async function runExternalUndo<R>(
  db: Db,
  ref: UndoRef,
  undo: ExternalUndo<R>,
  hooks?: LedgerHooks,
): Promise<R> {
  const workflowId = undoWorkflowId(ref);
  const fp = fingerprint(ref.input);
  const first = await inTransaction(db, async (tx) => {
    const existing = await claim(tx, ref, workflowId, fp);
    if (existing && existing.state !== 'pending') return { done: existing, forward: null };
    if (existing && existing.fingerprint !== fp) throw conflict(ref);
    const forward = await tombstone(tx, ref.forwardKey, workflowId, ref.step);
    return { done: null, forward };
  });
  if (first.done) return replay<R>(first.done, ref, fp, hooks);

  const result = await undo.call();
  return inTransaction(db, async (tx) => {
    const updated = await tx.query(
      `UPDATE step_ledger SET state = 'completed', result = $2, updated_at = now()
        WHERE key = $1 AND state = 'pending' RETURNING key`,
      [ref.key, JSON.stringify(result ?? null)],
    );
    if (updated.rowCount === 1) await undo.confirm(tx, result, first.forward);
    return result;
  });
}

export async function readLedger(db: Db, workflowId: string): Promise<LedgerRow[]> {
  const res = await db.query<LedgerRow>(
    `SELECT key, workflow_id, step, fingerprint, state, result, error
       FROM step_ledger WHERE workflow_id = $1 ORDER BY created_at, key`,
    [workflowId],
  );
  return res.rows;
}

/** The ledger bound to one database and one set of hooks, as the activities use it. */
export function boundLedger(deps: { db: Db; ledgerHooks?: LedgerHooks }) {
  const { db, ledgerHooks: hooks } = deps;
  return {
    runLocalStep: <T>(ref: StepRef, effect: (tx: Tx) => Promise<T>) => runLocalStep(db, ref, effect, hooks),
    runLocalUndo: <T>(ref: UndoRef, undo: (tx: Tx, forward: LedgerRow | null) => Promise<T>) =>
      runLocalUndo(db, ref, undo, hooks),
    runExternalStep: <R>(ref: StepRef, step: ExternalStep<R>) => runExternalStep(db, ref, step, hooks),
    runExternalUndo: <R>(ref: UndoRef, undo: ExternalUndo<R>) => runExternalUndo(db, ref, undo, hooks),
  };
}

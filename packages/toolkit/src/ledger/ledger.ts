import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { QueryResult, QueryResultRow } from 'pg';
import type { Db, Statement, Tx } from '../db';
import { commitWith, inTransaction as runInTransaction, isPermanentDataError } from '../db';
import { inlineStatement } from '../inline-sql';
import { assertStepName, InvalidStepKeyError, parseStepKey, type StepKey } from '../workflow/keys';
import { isSagaCause, STEP_CANCELLED, type RecordedCauseDetail, type SagaCause } from '../workflow/failures';
import { canonicalJson } from './fingerprint';

/**
 * The idempotency ledger: makes a saga's activities take effect exactly once.
 *
 * One row per step key (`<workflowId>/<step>` forward, `<workflowId>/<step>/undo`
 * for its compensation; ../workflow/keys.ts). A local step's effect and its
 * row commit in one transaction; an external step's row goes pending → call →
 * confirmed, the key being the service's idempotency key. A compensation leaves
 * the forward row 'cancelled' (a tombstone), so a forward attempt that lands
 * after it applies nothing. The same key with another input (by fingerprint) is
 * a conflict. Failures cross Temporal as ApplicationFailures typed with
 * LedgerFailure.
 *
 * Misuse is refused, not absorbed: inside an activity, a key must belong to the workflow that
 * runs it (two sagas never share a row); an input must be one JSON carries as it is (a Map would
 * fingerprint as `{}`); and a row written by one activity is not the answer of another one (the
 * activity's type is hashed with its input; see stepFingerprint).
 *
 * A workflow task can be lost after its local steps committed (a worker killed,
 * a task timed out); the retried task runs them again, and must reach the same
 * decisions. So every attempt answers what was recorded for its step, its
 * result or its business failure, even after a compensation tombstoned it (the
 * tombstone keeps the state it replaced, and applies nothing). An attempt that
 * finds no answer recorded, under a tombstone or in a saga that has started
 * compensating, fails with StepCancelled carrying the cause the compensation
 * recorded (an undo's input `cause`), and the saga helper unwinds for that
 * cause. `cause` is recorded, never fingerprinted: it says why, not what.
 */

/** Failure types the ledger raises; matched by these strings, never by class. */
export const LedgerFailure = {
  /** The same key was used with a different input. */
  IdempotencyConflict: 'IdempotencyConflict',
  /**
   * The step was compensated before this attempt, which found no answer recorded for it: it applies
   * nothing. Its details carry the saga's recorded cause ({ sagaCause }) when the compensation gave one.
   */
  StepCancelled: STEP_CANCELLED,
  /** PostgreSQL refused the step's data (SQLSTATE class 22 or 23): no retry can change that. */
  DataRejected: 'DataRejected',
  /** The key is not a key of this step (or not a step key at all). */
  InvalidStepKey: 'InvalidStepKey',
  /** Inside an activity, the key belongs to another workflow than the one running the activity. */
  ForeignWorkflowKey: 'ForeignWorkflowKey',
  /** The input holds a value JSON cannot carry as it is (a Map, a Set, a BigInt, NaN, a class instance...). */
  UnrepresentableInput: 'UnrepresentableInput',
  /**
   * A compensation cannot tell what its external forward step did: the step was recorded pending, or
   * tombstoned, before the ledger kept what it needs to find out. A person must check the service.
   */
  ForwardUnknown: 'ForwardUnknown',
  /**
   * Retryable, unlike the others: a rate limiter (createRateLimiter) found the caller's turn further
   * away than its maxWaitMs and took no token. The activity's retry policy decides when to ask again.
   */
  RateLimited: 'RateLimited',
} as const;

export type StepState = 'pending' | 'completed' | 'failed' | 'cancelled';

/** A failure recorded for a step and replayed to every later attempt. */
export interface RecordedFailure {
  type: string;
  message: string;
  details?: unknown[];
}

/** One row of the ledger. */
export interface LedgerEntry<R = unknown> {
  key: string;
  workflowId: string;
  step: string;
  fingerprint: string | null;
  state: StepState;
  result: R | null;
  error: RecordedFailure | null;
  /** For a tombstone: the state it replaced (null if the step never ran). */
  undone: Exclude<StepState, 'cancelled'> | null;
  /** For a tombstone: why its saga compensated, as the compensation said. */
  cause: SagaCause | null;
}

/**
 * What the forward step had done when its compensation took over (its tombstone
 * remembers it, so every attempt of the compensation is told the same):
 * - `absent`: it never ran, and now never will;
 * - `pending`: an external call was made, may still be in flight, or was never
 *   sent. A real service keeps nothing for a key it never saw, so the
 *   compensation repeats the forward request (`input`, the step's input) under
 *   the forward key: the service answers what it did, or does it now, and the
 *   compensation reverses that. `input` is null for a step claimed before the
 *   ledger kept it;
 * - `completed` with its result, or `failed` with its recorded failure;
 * - `cancelled`: tombstoned before tombstones remembered what they replaced (an old row).
 */
export type ForwardOutcome<F = unknown> =
  | { state: 'absent' }
  | { state: 'pending'; input: unknown }
  | { state: 'completed'; result: F }
  | { state: 'failed'; error: RecordedFailure }
  | { state: 'cancelled' };

/** Observes the ledger, e.g. to count dedupe hits; every member optional. */
export interface LedgerHooks {
  /** A duplicate execution was answered from the recorded outcome. */
  onReplay?(step: string, key: string): void;
}

export type CallOutcome<R> = { ok: true; result: R } | { ok: false; failure: RecordedFailure };

export interface ExternalStep<R> {
  /** Writes the local 'pending' record in the claim transaction. */
  prepare?(tx: Tx): Promise<void>;
  /**
   * The same as one statement whose result is not needed: it goes to PostgreSQL with the claim
   * transaction's COMMIT, one round trip for both (after `prepare`, if both are given).
   */
  prepareStatement?: Statement;
  /** Calls the service with the step key as its idempotency key. */
  call(): Promise<CallOutcome<R>>;
  /** Settles the local record in the same transaction as the ledger. */
  confirm?(tx: Tx, outcome: CallOutcome<R>): Promise<void>;
  /** The same as one statement (or none), sent with the settle's COMMIT (after `confirm`, if both are given). */
  confirmStatement?(outcome: CallOutcome<R>): Statement | undefined;
}

/** What a compensation is handed: its key, the forward key it undoes, and what the forward step had done. */
export interface UndoContext<F = unknown> {
  key: string;
  forwardKey: string;
  forward: ForwardOutcome<F>;
}

export interface ExternalUndo<R, F = unknown> {
  /**
   * Reverses what `ctx.forward` says the forward step did: nothing when it is absent or failed, its
   * result when completed; when pending, first repeats its request under `ctx.forwardKey` to learn the
   * service's answer. Every attempt is given the same `ctx` and must send the same requests.
   */
  call(ctx: UndoContext<F>): Promise<R>;
  /** Settles the local record from the service's answer, in the ledger's transaction. */
  confirm?(tx: Tx, result: R, ctx: UndoContext<F>): Promise<void>;
  /** The same as one statement (or none), sent with that transaction's COMMIT (after `confirm`, if both are given). */
  confirmStatement?(result: R, ctx: UndoContext<F>): Statement | undefined;
}

/**
 * What an external compensation has to reverse, from what its forward step did: null when the step
 * never ran or failed (nothing to reverse), its result when it completed. When it is pending, its call
 * was made, is still in flight, or was never sent, and a real service keeps nothing for a key it never
 * saw: `repeat` sends the forward request again, from the step's recorded input, under
 * `ctx.forwardKey`, and returns what the service answers (null for a business failure such as a
 * decline). The service replays what it did, or does it now; either way no later attempt of the
 * forward step can apply anything, since the tombstone stops it before its call.
 */
export async function forwardEffect<F, I = unknown>(ctx: UndoContext<F>, repeat: (input: I) => Promise<F | null>): Promise<F | null> {
  const { forward } = ctx;
  switch (forward.state) {
    case 'absent':
    case 'failed':
      return null;
    case 'completed':
      return forward.result;
    case 'pending':
      if (forward.input !== null) return repeat(forward.input as I);
      break;
  }
  // A pending step claimed before the ledger kept inputs, or a tombstone left before it kept what it replaced.
  throw ApplicationFailure.nonRetryable(
    `cannot tell whether ${ctx.forwardKey} took effect: it was recorded before the ledger kept its request; check the service and resolve it by hand`,
    LedgerFailure.ForwardUnknown,
  );
}

/** What a local step's one statement is (its parameters as pg takes them) and what the step answers. */
export interface PlannedStatement<T> {
  statement: Statement;
  result: T;
}

/** The ledger operations of one step; every key given must be a key of that step. */
export interface StepLedger {
  readonly step: string;
  /** A local step: the effect and its record in one transaction, or neither. */
  local<T>(key: string, input: unknown, effect: (tx: Tx) => Promise<T>): Promise<T>;
  /**
   * A local step whose effect is one statement whose answer the step does not need: `plan` gives
   * the statement and the step's result, or throws the step's business failure before anything is
   * sent. BEGIN, the statement, its record and COMMIT then go as one message: one round trip.
   */
  localStatement<T>(key: string, input: unknown, plan: () => PlannedStatement<T>): Promise<T>;
  /**
   * A local compensation: tombstones the forward step and undoes its effect in one transaction.
   * An input's `cause` (the saga's CompensationContext) is recorded on the tombstone, not fingerprinted.
   */
  localUndo<T, F = unknown>(key: string, input: unknown, undo: (tx: Tx, ctx: UndoContext<F>) => Promise<T>): Promise<T>;
  /** A step whose effect lives in another service: pending → call → confirmed. */
  external<R>(key: string, input: unknown, step: ExternalStep<R>): Promise<R>;
  /** The compensation of an external step: tombstone locally first, then ask the service. */
  externalUndo<R, F = unknown>(key: string, input: unknown, undo: ExternalUndo<R, F>): Promise<R>;
  /**
   * Stops the step before it runs, in one write: tombstones its (forward) key unless an attempt
   * already claimed it. True: abandoned (now or by an earlier call), no attempt can ever apply it.
   * False: an attempt had claimed it (a workflow task lost after it started the step), which stands.
   * An input's `cause` (the saga's) is recorded on the tombstone, as a compensation's is.
   */
  abandon(key: string, input: unknown): Promise<boolean>;
}

export interface Ledger {
  /** The operations of the step `name`, checking that every key they get names it. */
  step(name: string): StepLedger;
  /** Every row of one saga, oldest first. */
  read(workflowId: string): Promise<LedgerEntry[]>;
}

/** The ledger on a pool whose search path holds the `step_ledger` table (see migrateLedger). */
export function createLedger(db: Db, hooks: LedgerHooks = {}): Ledger {
  return {
    step(name) {
      assertStepName(name);
      const keyOf = (key: string, undo: boolean) => checkKey(key, name, undo);
      // Async, so that a key refused is a rejected promise like every other failure, never a throw.
      return {
        step: name,
        local: async (key, input, effect) => runLocalStep(db, keyOf(key, false), input, effect, hooks),
        localStatement: async (key, input, plan) => runLocalStep(db, keyOf(key, false), input, { plan }, hooks),
        localUndo: async (key, input, undo) => runLocalUndo(db, keyOf(key, true), input, undo, hooks),
        external: async (key, input, step) => runExternalStep(db, keyOf(key, false), input, step, hooks),
        externalUndo: async (key, input, undo) => runExternalUndo(db, keyOf(key, true), input, undo, hooks),
        abandon: async (key, input) => abandonStep(db, keyOf(key, false), input),
      };
    },
    read: (workflowId) => readLedger(db, workflowId),
  };
}

/** The activity this code runs in, or undefined outside one (a script, a test calling the ledger directly). */
interface RunningActivity {
  workflowId: string | undefined;
  activityType: string;
}

function runningActivity(): RunningActivity | undefined {
  let info: Context['info'];
  try {
    info = Context.current().info;
  } catch {
    return undefined; // not in an activity: no check
  }
  return { workflowId: info.workflowExecution?.workflowId, activityType: info.activityType };
}

function checkKey(key: string, step: string, undo: boolean): StepKey {
  const parsed = parseKey(key, step, undo);
  const running = runningActivity()?.workflowId;
  // A key built from anything but the running workflow's ID would share its row with another saga.
  if (running !== undefined && parsed.workflowId !== running) {
    throw ApplicationFailure.nonRetryable(
      `key "${key}" belongs to workflow "${parsed.workflowId}", but this activity runs for workflow "${running}": ` +
        `build step keys from the running workflow's ID (sagaKeys(workflowInfo().workflowId))`,
      LedgerFailure.ForeignWorkflowKey,
    );
  }
  return parsed;
}

function parseKey(key: string, step: string, undo: boolean): StepKey {
  let parsed: StepKey;
  try {
    parsed = parseStepKey(key);
  } catch (err) {
    if (err instanceof InvalidStepKeyError) throw ApplicationFailure.nonRetryable(err.message, LedgerFailure.InvalidStepKey);
    throw err;
  }
  if (parsed.step !== step || parsed.undo !== undo) {
    const want = undo ? `<workflowId>/${step}/undo` : `<workflowId>/${step}`;
    throw ApplicationFailure.nonRetryable(`key "${key}" is not a key of ${want}`, LedgerFailure.InvalidStepKey);
  }
  return parsed;
}

/**
 * The ledger's transactions. Data PostgreSQL refuses (class 22 or 23) is refused
 * the same way on every attempt, so it leaves as a non-retryable failure: a
 * forward step fails (and is recorded), a compensation is reported as failed,
 * instead of being retried without end.
 *
 * Each statement is a round trip, and a round trip costs the worker and PostgreSQL more than the
 * statement's own work: so where the ledger's statement opens the transaction, BEGIN goes with it
 * (`begins`: fn sends it, through beginWith; `begins: 'lazily'`: with whatever fn sends first, a
 * local step's effect), and where the ledger's statement closes it, COMMIT does (`commits`: fn
 * sends it, with its own statement or through commitWith).
 */
async function inTransaction<T>(db: Db, fn: (tx: Tx) => Promise<T>, own: { begins?: boolean | 'lazily'; commits?: boolean } = {}): Promise<T> {
  try {
    return await runInTransaction(db, fn, own);
  } catch (err) {
    if (!isPermanentDataError(err)) throw err;
    const e = err as { code: string; message?: string };
    throw ApplicationFailure.create({
      message: `PostgreSQL refused the data: ${e.message ?? 'data error'} (SQLSTATE ${e.code})`,
      type: LedgerFailure.DataRejected,
      nonRetryable: true,
    });
  }
}

/** A value as an SQL literal, escaped by the driver: for the statements sent with BEGIN or COMMIT (which take no parameters). */
function literal(tx: Tx, value: string | null): string {
  return value === null ? 'NULL' : tx.escapeLiteral(value);
}

/** BEGIN and the transaction's first statement (literals only) in one round trip: the statement's result. */
async function beginWith<R extends QueryResultRow>(tx: Tx, statement: string): Promise<QueryResult<R>> {
  const results = (await tx.query(`BEGIN; ${statement}`)) as unknown as QueryResult<R>[];
  return results[1]!;
}

/**
 * A step input's fingerprint. Inside an activity it hashes the activity's type with the input, so
 * that a second activity using the same key with the same input (another effect under the same
 * step name) is a conflict rather than the first one's answer. A stored fingerprint of the input
 * alone (a row written before the type was hashed, or outside an activity) still matches: those
 * rows cannot say which activity wrote them.
 */
interface Fingerprint {
  /** What is stored for a new row. */
  value: string;
  matches(stored: string | null): boolean;
}

function stepFingerprint(ref: StepKey, input: unknown): Fingerprint {
  let canonical: string;
  try {
    canonical = canonicalJson(input);
  } catch (err) {
    // Matched by name, not class: the error may come from another module registry.
    if ((err as Error | null)?.name !== 'UnrepresentableValueError') throw err;
    throw ApplicationFailure.nonRetryable(`step ${ref.key}: ${(err as Error).message}`, LedgerFailure.UnrepresentableInput);
  }
  const inputOnly = sha256(canonical);
  const activity = runningActivity()?.activityType;
  // No canonical JSON text starts with "activity ", so no input alone can hash like this.
  const value = activity === undefined ? inputOnly : sha256(`activity ${activity}\n${canonical}`);
  return { value, matches: (stored) => stored === value || stored === inputOnly };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

interface Row {
  key: string;
  workflow_id: string;
  step: string;
  fingerprint: string | null;
  state: StepState;
  result: unknown;
  error: RecordedFailure | null;
  undone: Exclude<StepState, 'cancelled'> | null;
  cause: unknown;
  /** An external step's input while it is pending (never read out of the ledger). */
  input?: unknown;
}

const COLUMNS = 'key, workflow_id, step, fingerprint, state, result, error, undone, cause';
const SELECT_ROW = `SELECT ${COLUMNS}, input FROM step_ledger WHERE key = $1`;

/**
 * Ends an INSERT … SELECT of a forward step's row: inserted unless its saga has started
 * compensating (any tombstone among its rows), for from then on no forward step of that saga may
 * apply, whichever task or attempt runs it; and unless the key is taken. `workflowId` is SQL: a
 * parameter (`$2`) or a quoted literal. Answers with `returning` for a row inserted.
 */
function unlessCompensating(workflowId: string, returning = 'key'): string {
  return `WHERE NOT EXISTS (SELECT 1 FROM step_ledger WHERE workflow_id = ${workflowId} AND state = 'cancelled')
  ON CONFLICT (key) DO NOTHING RETURNING ${returning}`;
}

function toEntry(row: Row): LedgerEntry {
  return {
    key: row.key,
    workflowId: row.workflow_id,
    step: row.step,
    fingerprint: row.fingerprint,
    state: row.state,
    result: row.result,
    error: row.error,
    undone: row.undone,
    cause: isSagaCause(row.cause) ? row.cause : null,
  };
}

/** A failed row's failure: written with the row (recordFailure, an external step's settle), never null but in a row edited by hand. */
function recordedError(row: Row): RecordedFailure {
  return row.error ?? { type: 'Unknown', message: 'failed' };
}

/**
 * The forward step's outcome as its row (before or after its tombstone) tells it. A tombstone with
 * nothing under it and no fingerprint is a step that never ran; one with a fingerprint but no
 * `undone` was left before tombstones remembered (migration 008), and says only 'cancelled'.
 */
function forwardOutcome<F>(row: Row | null): ForwardOutcome<F> {
  if (!row) return { state: 'absent' };
  const state = row.state === 'cancelled' ? (row.undone ?? (row.fingerprint === null ? 'absent' : 'cancelled')) : row.state;
  switch (state) {
    case 'completed':
      return { state: 'completed', result: row.result as F };
    case 'failed':
      return { state: 'failed', error: recordedError(row) };
    case 'pending':
      return { state: 'pending', input: row.input ?? null };
    default:
      return { state };
  }
}

/**
 * Claims a key with a 'pending' row, or returns the row already there. A forward key is not claimed
 * once its saga has started compensating: that throws StepCancelled with the saga's cause.
 */
async function claim(tx: Tx, ref: StepKey, fp: Fingerprint, input?: unknown): Promise<Row | null> {
  // The insert is the lock: a concurrent duplicate waits here until this
  // transaction ends, then finds the committed row and replays it. It opens the transaction.
  const inserted = await beginWith(tx, claimInsert(tx, ref, fp, input));
  if (inserted.rowCount === 1) return null;
  const existing = await tx.query<Row>(`${SELECT_ROW} FOR UPDATE`, [ref.key]);
  const row = existing.rows[0];
  if (!row) throw cancelled(ref.key, await sagaCause(tx, ref.workflowId));
  return row;
}

/** The claim's INSERT of a 'pending' row (literals only), answering with the key when it inserted one. */
function claimInsert(tx: Tx, ref: StepKey, fp: Fingerprint, input?: unknown): string {
  const l = (v: string | null) => literal(tx, v);
  return ref.undo
    ? `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state)
       VALUES (${l(ref.key)}, ${l(ref.workflowId)}, ${l(ref.step)}, ${l(fp.value)}, 'pending') ON CONFLICT (key) DO NOTHING RETURNING key`
    : `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state, input)
       SELECT ${l(ref.key)}, ${l(ref.workflowId)}, ${l(ref.step)}, ${l(fp.value)}, 'pending', ${l(JSON.stringify(input ?? null))}::jsonb
        ${unlessCompensating(l(ref.workflowId))}`;
}

/**
 * A whole transaction in one message, `BEGIN; <must>; <then>; COMMIT`, for a ledger write whose
 * outcome is known in advance on the common path: `must` (literals only) answers with one row when
 * that path holds and none when it does not (a key already taken, a row no longer pending, a saga
 * compensating); the division by that count then fails the message, PostgreSQL skips the rest of
 * it, and nothing of it applies. True when it committed; false when `must` found no row (or `then`
 * cannot be written with its values in): the caller then takes the path of separate statements,
 * which reads what is there. A round trip where that path takes two.
 */
async function inOneMessage(db: Db, must: (tx: Tx) => string, then?: Statement): Promise<boolean> {
  // Whether `then` can go in the message does not depend on how its values are quoted.
  if (then && inlineStatement(then, (text) => text) === undefined) return false;
  try {
    await inTransaction(
      db,
      async (tx) => {
        const last = then ? `${inlineStatement(then, (text) => tx.escapeLiteral(text))!}; ` : '';
        await requiringRow(tx, must(tx), { before: 'BEGIN; ', after: `${last}COMMIT` });
      },
      { begins: true, commits: true },
    );
    return true;
  } catch (err) {
    if (err instanceof KeyTaken) return false;
    throw err;
  }
}

/** The cause recorded by the saga's compensation, if it has started one and gave a cause. */
async function sagaCause(db: Db | Tx, workflowId: string): Promise<SagaCause | null> {
  const res = await db.query<{ cause: unknown }>(
    `SELECT cause FROM step_ledger WHERE workflow_id = $1 AND state = 'cancelled' AND cause IS NOT NULL
      ORDER BY updated_at, key LIMIT 1`,
    [workflowId],
  );
  const cause = res.rows[0]?.cause;
  return isSagaCause(cause) ? cause : null;
}

/** An undo input's `cause`, apart from what identifies the undo (which alone is fingerprinted). */
function splitCause(input: unknown): { identity: unknown; cause: SagaCause | null } {
  if (input === null || typeof input !== 'object' || Array.isArray(input) || !('cause' in input)) {
    return { identity: input, cause: null };
  }
  const { cause, ...identity } = input as { cause?: unknown };
  return { identity, cause: isSagaCause(cause) ? { cancelled: cause.cancelled, failure: { type: cause.failure.type, message: cause.failure.message } } : null };
}

function conflict(ref: StepKey): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `idempotency key ${ref.key} was used with a different input`,
    LedgerFailure.IdempotencyConflict,
  );
}

function cancelled(key: string, cause: SagaCause | null): ApplicationFailure {
  const detail: RecordedCauseDetail | undefined = cause ? { sagaCause: cause } : undefined;
  return ApplicationFailure.create({
    message: `step ${key} was compensated${cause ? ` (${cause.cancelled ? 'cancelled' : `${cause.failure.type}: ${cause.failure.message}`})` : ''}; this late attempt applies nothing`,
    type: LedgerFailure.StepCancelled,
    nonRetryable: true,
    details: detail ? [detail] : undefined,
  });
}

/**
 * Returns the recorded result or rethrows the recorded business failure, also
 * through a tombstone: an attempt of a step undone since (a workflow task retried
 * after it was lost) gets the answer the first attempt got, and applies nothing.
 * A tombstone with no answer under it fails the attempt with StepCancelled.
 */
function replay<T>(row: Row, ref: StepKey, fp: Fingerprint, hooks: LedgerHooks): T {
  const state = row.state === 'cancelled' ? row.undone : row.state;
  // Only a tombstone can stand over nothing, or over a call never answered (a row still pending is never replayed).
  if (state === null || state === 'pending') {
    throw cancelled(ref.key, isSagaCause(row.cause) ? row.cause : null);
  }
  // (A row without a fingerprint is a tombstone over a step that never ran: refused above.)
  if (!fp.matches(row.fingerprint)) throw conflict(ref);
  hooks.onReplay?.(ref.step, ref.key);
  if (state === 'failed') {
    const e = recordedError(row);
    throw ApplicationFailure.create({ message: e.message, type: e.type, nonRetryable: true, details: e.details });
  }
  return row.result as T;
}

/** A business failure is one a retry cannot change: it is recorded and replayed. */
function asBusinessFailure(err: unknown): RecordedFailure | null {
  // Matched by shape, not class: failures may come from another module registry.
  const f = err as Partial<ApplicationFailure> | null;
  if (f && typeof f.type === 'string' && f.nonRetryable === true) {
    return { type: f.type, message: f.message ?? '', details: f.details ? [...f.details] : undefined };
  }
  return null;
}

async function recordFailure(db: Db, ref: StepKey, fp: Fingerprint, failure: RecordedFailure): Promise<boolean> {
  const res = await db.query(
    `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state, error)
     SELECT $1, $2, $3, $4, 'failed', $5::jsonb ${unlessCompensating('$2')}`,
    [ref.key, ref.workflowId, ref.step, fp.value, failure],
  );
  return res.rowCount === 1;
}

/** Thrown inside a local step's transaction to roll its effect back when the key turns out to be taken. */
class KeyTaken extends Error {}

/** SQLSTATE of a requiringRow statement when its row was not there. */
const DIVISION_BY_ZERO = '22012';

/**
 * Sends `before`, then `WITH must AS (<must>) SELECT 1 / count(*) FROM must`, then `after`, as one
 * message. When `must` answers no row (a key taken, a row no longer pending, a saga compensating)
 * the division fails the message, PostgreSQL skips the rest of it, and this throws KeyTaken.
 */
async function requiringRow(tx: Tx, must: string, { before, after }: { before: string; after: string }): Promise<void> {
  try {
    await tx.query(`${before}WITH must AS (${must}) SELECT 1 / count(*) FROM must; ${after}`);
  } catch (err) {
    if ((err as { code?: unknown } | null)?.code === DIVISION_BY_ZERO) throw new KeyTaken();
    throw err;
  }
}

/**
 * The effect first, the record last: BEGIN, the effect's statements, one
 * INSERT of the completed row, COMMIT. Claiming first would cost a round trip
 * and a second row version (insert pending, then update) on every step, to
 * spare only duplicates, which are rare.
 *
 * The INSERT is still the lock: a concurrent duplicate that reaches it waits for
 * this transaction; whichever commits second finds the key taken (completed,
 * failed or tombstoned), rolls its own effect back and replays the recorded
 * outcome. An effect that fails only because its twin already applied (a
 * unique row, stock already held) is answered the same way, from the record.
 */
async function runLocalStep<T>(
  db: Db,
  ref: StepKey,
  input: unknown,
  effect: ((tx: Tx) => Promise<T>) | { plan: () => PlannedStatement<T> },
  hooks: LedgerHooks,
): Promise<T> {
  const fp = stepFingerprint(ref, input);
  const recorded = async (): Promise<Row | undefined> => (await db.query<Row>(SELECT_ROW, [ref.key])).rows[0];
  try {
    return await inTransaction(
      db,
      async (tx) => {
        let result: T;
        // A planned statement goes in the record's message, written with its values in, where it can be.
        let first = '';
        if (typeof effect === 'function') {
          result = await effect(tx);
        } else {
          const planned = effect.plan();
          result = planned.result;
          const inlined = inlineStatement(planned.statement, (text) => tx.escapeLiteral(text));
          if (inlined === undefined) await tx.query(planned.statement.text, planned.statement.values as unknown[] | undefined);
          else first = `${inlined}; `;
        }
        // The record and COMMIT in one round trip. A key taken (or a saga compensating) inserts no
        // row, and the division by that count of rows fails the statement: COMMIT is not run, and
        // the transaction rolls back, effect and all.
        const l = (v: string | null) => literal(tx, v);
        await requiringRow(
          tx,
          `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state, result)
           SELECT ${l(ref.key)}, ${l(ref.workflowId)}, ${l(ref.step)}, ${l(fp.value)}, 'completed', ${l(JSON.stringify(result ?? null))}::jsonb
            ${unlessCompensating(l(ref.workflowId), '1')}`,
          { before: first, after: 'COMMIT' },
        );
        return result;
      },
      // BEGIN goes with the effect's first statement: the step is two round trips, or one (a planned
      // statement: BEGIN, it, the record and COMMIT in one message).
      { begins: 'lazily', commits: true },
    );
  } catch (err) {
    // The key is taken, or the saga has started compensating: the record answers, or the saga's cause.
    const answer = async (): Promise<T> => {
      const row = await recorded();
      if (!row) throw cancelled(ref.key, await sagaCause(db, ref.workflowId));
      return replay<T>(row, ref, fp, hooks);
    };
    if (err instanceof KeyTaken) return answer();
    const failure = asBusinessFailure(err);
    // The transaction rolled back, effect and all; record the business failure on
    // its own so a duplicate replays the same answer. If the key is already taken,
    // this attempt was the duplicate: the record answers it.
    if (failure && !(await recordFailure(db, ref, fp, failure))) return answer();
    throw err;
  }
}

/**
 * Tombstones the forward key inside tx and returns what it was before:
 * null if the forward step never ran (it now never will).
 */
async function tombstone(tx: Tx, ref: StepKey, cause: SagaCause | null): Promise<Row | null> {
  for (;;) {
    const locked = await tx.query<Row>(`${SELECT_ROW} FOR UPDATE`, [ref.forwardKey]);
    const prev = locked.rows[0];
    if (prev) {
      // The tombstone keeps the state it replaces (its result or error stay too), and the first cause given.
      await tx.query(
        `UPDATE step_ledger
            SET undone = CASE WHEN state = 'cancelled' THEN undone ELSE state END,
                state = 'cancelled', cause = COALESCE(cause, $2), updated_at = now()
          WHERE key = $1 AND (state <> 'cancelled' OR (cause IS NULL AND $2::jsonb IS NOT NULL))`,
        [ref.forwardKey, cause],
      );
      return prev;
    }
    const inserted = await tx.query(
      `INSERT INTO step_ledger (key, workflow_id, step, state, cause) VALUES ($1, $2, $3, 'cancelled', $4)
       ON CONFLICT (key) DO NOTHING RETURNING key`,
      [ref.forwardKey, ref.workflowId, ref.step, cause],
    );
    if (inserted.rowCount === 1) return null; // the step never ran, and now never will
    // A forward attempt committed between our read and insert: lock it and undo it.
  }
}

async function runLocalUndo<T, F>(
  db: Db,
  ref: StepKey,
  input: unknown,
  undo: (tx: Tx, ctx: UndoContext<F>) => Promise<T>,
  hooks: LedgerHooks,
): Promise<T> {
  const { identity, cause } = splitCause(input);
  const fp = stepFingerprint(ref, identity);
  return inTransaction(
    db,
    async (tx) => {
      const existing = await claim(tx, ref, fp);
      if (existing) return replay<T>(existing, ref, fp, hooks);
      const prev = await tombstone(tx, ref, cause);
      const result = await undo(tx, { key: ref.key, forwardKey: ref.forwardKey, forward: forwardOutcome<F>(prev) });
      await tx.query(
        `UPDATE step_ledger SET state = 'completed', result = $2, updated_at = now() WHERE key = $1`,
        [ref.key, JSON.stringify(result ?? null)],
      );
      return result;
    },
    { begins: true },
  );
}

/**
 * The step's settling statement for this outcome, if it gives one. Apart from the settle's code, so
 * that the bounded mutation run there plants no defect in a step's optional hook that the order
 * service's steps (which all give one) cannot show.
 */
function confirmOf<R>(step: ExternalStep<R>, outcome: CallOutcome<R>): Statement | undefined {
  return step.confirmStatement?.(outcome);
}

async function runExternalStep<R>(db: Db, ref: StepKey, input: unknown, step: ExternalStep<R>, hooks: LedgerHooks): Promise<R> {
  const fp = stepFingerprint(ref, input);
  // The claim, `prepareStatement` and COMMIT in one message, unless `prepare` needs the claim first.
  const claimed = !step.prepare && (await inOneMessage(db, (tx) => claimInsert(tx, ref, fp, input), step.prepareStatement));
  if (!claimed) {
    const recorded = await inTransaction(
      db,
      async (tx) => {
        const existing = await claim(tx, ref, fp, input);
        if (existing && existing.state !== 'pending') {
          await commitWith(tx);
          return existing;
        }
        // Pending: an earlier attempt died mid-call, and calling again is safe (same fingerprint only).
        if (existing && !fp.matches(existing.fingerprint)) throw conflict(ref);
        if (!existing) await step.prepare?.(tx);
        await commitWith(tx, existing ? undefined : step.prepareStatement);
        return null;
      },
      { begins: true, commits: true },
    );
    if (recorded) return replay<R>(recorded, ref, fp, hooks);
  }

  const outcome = await step.call();
  const settle = (tx: Tx) => {
    const l = (v: string | null) => literal(tx, v);
    return `UPDATE step_ledger SET state = ${outcome.ok ? "'completed'" : "'failed'"},
              result = ${l(outcome.ok ? JSON.stringify(outcome.result ?? null) : null)}::jsonb,
              error = ${l(outcome.ok ? null : JSON.stringify(outcome.failure))}::jsonb, input = NULL, updated_at = now()
        WHERE key = ${l(ref.key)} AND state = 'pending' RETURNING key`;
  };
  // The settle, `confirmStatement` and COMMIT in one message, unless `confirm` needs the settle first.
  const settledInOne = !step.confirm && (await inOneMessage(db, settle, confirmOf(step, outcome)));
  const settled = settledInOne
    ? outcome
    : await inTransaction(db, async (tx): Promise<CallOutcome<R>> => {
        const updated = await beginWith(tx, settle(tx));
        if (updated.rowCount === 1) {
          await step.confirm?.(tx, outcome);
          await commitWith(tx, confirmOf(step, outcome));
          return outcome;
        }
        // Someone else settled the key first: a concurrent duplicate, or a compensation.
        const row = (await tx.query<Row>(SELECT_ROW, [ref.key])).rows[0];
        if (!row) throw new Error(`ledger row ${ref.key} vanished`);
        await commitWith(tx);
        return { ok: true, result: replay<R>(row, ref, fp, hooks) };
      }, { begins: true, commits: true });
  // A recorded business failure is thrown only after its record has committed.
  if (settled.ok) return settled.result;
  const f = settled.failure;
  throw ApplicationFailure.create({ message: f.message, type: f.type, nonRetryable: true, details: f.details });
}

async function runExternalUndo<R, F>(db: Db, ref: StepKey, input: unknown, undo: ExternalUndo<R, F>, hooks: LedgerHooks): Promise<R> {
  const { identity, cause } = splitCause(input);
  const fp = stepFingerprint(ref, identity);
  const first = await inTransaction(
    db,
    async (tx): Promise<{ done: Row } | { forward: ForwardOutcome<F> }> => {
      const existing = await claim(tx, ref, fp);
      if (existing && existing.state !== 'pending') return { done: existing };
      if (existing && !fp.matches(existing.fingerprint)) throw conflict(ref);
      return { forward: forwardOutcome<F>(await tombstone(tx, ref, cause)) };
    },
    { begins: true },
  );
  if ('done' in first) return replay<R>(first.done, ref, fp, hooks);

  const ctx: UndoContext<F> = { key: ref.key, forwardKey: ref.forwardKey, forward: first.forward };
  const result = await undo.call(ctx);
  return inTransaction(db, async (tx) => {
    const updated = await beginWith(
      tx,
      `UPDATE step_ledger SET state = 'completed', result = ${literal(tx, JSON.stringify(result ?? null))}::jsonb, updated_at = now()
        WHERE key = ${literal(tx, ref.key)} AND state = 'pending' RETURNING key`,
    );
    if (updated.rowCount === 1) {
      // The forward request has been answered for good: the tombstone no longer keeps it.
      await tx.query(`UPDATE step_ledger SET input = NULL WHERE key = $1 AND input IS NOT NULL`, [ref.forwardKey]);
      await undo.confirm?.(tx, result, ctx);
    }
    await commitWith(tx, updated.rowCount === 1 ? undo.confirmStatement?.(result, ctx) : undefined);
    return result;
  }, { begins: true, commits: true });
}

async function abandonStep(db: Db, ref: StepKey, input: unknown): Promise<boolean> {
  const { cause } = splitCause(input);
  const res = await db.query<{ state: StepState }>(
    `WITH tombstone AS (
       INSERT INTO step_ledger (key, workflow_id, step, state, cause) VALUES ($1, $2, $3, 'cancelled', $4)
       ON CONFLICT (key) DO NOTHING RETURNING state)
     SELECT state FROM tombstone UNION ALL SELECT state FROM step_ledger WHERE key = $1`,
    [ref.key, ref.workflowId, ref.step, cause],
  );
  // The insert's row, or (on conflict) the row already there: a tombstone either way means abandoned.
  // A row committed while the insert waited on it is not in the statement's snapshot: read it now.
  const state = res.rows[0]?.state ?? (await db.query<{ state: StepState }>(`SELECT state FROM step_ledger WHERE key = $1`, [ref.key])).rows[0]?.state;
  return state === 'cancelled';
}

/**
 * Whether the row of `key` among a saga's rows (Ledger.read) holds an answer an attempt got:
 * completed or failed, also under the tombstone of a compensation since. Every later attempt of
 * the step is answered from it (for the saga helper's SagaOptions.stepAnswered).
 */
export function holdsAnswer(rows: LedgerEntry[], key: string): boolean {
  const row = rows.find((r) => r.key === key);
  if (!row) return false;
  const answered = (state: StepState | null) => state === 'completed' || state === 'failed';
  return answered(row.state) || (row.state === 'cancelled' && answered(row.undone));
}

async function readLedger(db: Db, workflowId: string): Promise<LedgerEntry[]> {
  const res = await db.query<Row>(
    `SELECT ${COLUMNS} FROM step_ledger WHERE workflow_id = $1 ORDER BY created_at, key`,
    [workflowId],
  );
  return res.rows.map(toEntry);
}

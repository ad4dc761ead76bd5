import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  isCancellation,
  patched,
  setCurrentDetails,
  setHandler,
  sleep,
  workflowInfo,
  type QueryDefinition,
} from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import { describeFailure, isNonRetryable, recordedCause, SagaFailure, type SagaCause, type SagaFailureInfo } from './failures';
import { backoffMs, cloneStatus, describeSagaStatus, type CompensationRecord, type RetryRecord, type SagaStatus } from './status';
import {
  sagaCancelUpdate,
  sagaResolveUpdate,
  sagaRetryCompensationUpdate,
  sagaStatusQuery,
  type CancelRequest,
  type CancelResponse,
  type OperatorRequest,
  type ResolveResponse,
  type RetryCompensationResponse,
} from './definitions';
import { stepKey, undoKey } from './keys';

export { describeSagaStatus, sagaCancelUpdate, sagaResolveUpdate, sagaRetryCompensationUpdate, sagaStatusQuery };
export type { CancelRequest, CancelResponse, OperatorRequest, ResolveResponse, RetryCompensationResponse };
export type { CompensationRecord, RetryRecord, SagaPhase, SagaStatus } from './status';

/**
 * A generic saga (Garcia-Molina & Salem, 1987) for Temporal workflows.
 *
 * - compensatable: has an undo, run in reverse order if the saga fails before its pivot;
 * - pivot: the point of no return; once it starts, cancel is refused; once it
 *   completes, nothing is compensated;
 * - retriable: after the pivot; retried until it succeeds, never compensated.
 *
 * An undo is registered BEFORE its forward call: a call whose outcome is unknown
 * (a timeout, a cancel mid-flight) is undone too, and undoing an effect that never
 * happened must be a no-op (the activities' tombstones make it one).
 *
 * Compensations run non-cancellable and are retried until they succeed; each
 * failed attempt is visible in status(). One that fails non-retryably does not stop
 * the others; all such failures are reported together as a CompensationFailed
 * failure, never swallowed.
 */

/** Marks sagas that compensate the step a cancel abandoned before it started. */
export const UNDO_ABANDONED_STEP_PATCH = 'saga-undo-abandoned-step';

/** Marks sagas whose local steps run through a cancel, up to the next step that is not local. */
export const LOCAL_STEPS_THROUGH_CANCEL_PATCH = 'saga-local-steps-through-cancel';

/**
 * Marks sagas that answer a cancel by what it came to: a cancel that arrives while only local steps
 * run (or before any step) is answered once the saga knows whether it unwinds for it or for a
 * failure those steps met first.
 */
export const CANCEL_ANSWERED_BY_OUTCOME_PATCH = 'saga-cancel-answered-by-outcome';

/**
 * Marks sagas that treat a cancel through Temporal (`temporal workflow cancel`, a handle's cancel())
 * before the pivot as a cancel, like the cancel update: they unwind as cancelled. Before it, the
 * interrupted step's failure was taken as the cause, and the saga ended compensated for it.
 */
export const TEMPORAL_CANCEL_PATCH = 'saga-temporal-cancel-is-a-cancel';

/**
 * Marks sagas that honour a cancel accepted at once (it came while a step that is not local was in
 * flight) even when that step ran to its end anyway (uninterruptible) and no step followed to stop
 * at. Before it, such a saga completed with its cancel accepted but ignored.
 */
export const ACCEPTED_CANCEL_STANDS_PATCH = 'saga-accepted-cancel-stands';

/**
 * Marks sagas that refuse a second step under a name already used (a SagaDefinition failure): the
 * name makes the step's idempotency key, so the second step would be answered with the first one's
 * result. Asked only when a name repeats, so no other saga records it; one that already repeated a
 * name before the rule replays without it.
 */
export const DISTINCT_STEP_NAMES_PATCH = 'saga-distinct-step-names';

/**
 * Marks sagas held for an operator when a compensation failed for good (SagaOptions.holdForOperator):
 * asked only then, so no other saga records it; one whose compensation failed before the rule
 * replays failing at once, as it did.
 */
export const OPERATOR_HOLD_PATCH = 'saga-hold-for-operator';

/**
 * Marks sagas that, meeting a cancel at a local step that has an `abandon`, ask it whether a lost
 * workflow task already started the step (see StepDefinition.abandon): asked only then, so no other
 * saga records it.
 */
export const LOCAL_STEP_ABANDON_PATCH = 'saga-local-step-abandon';

/**
 * Marks sagas that, when a local step's attempts ran out on a failure that decides nothing, ask
 * whether an earlier task of the run got the step's answer, and run it again if so
 * (SagaOptions.stepAnswered); and that ask a step's `abandon` again when it failed so. Asked by
 * patched() even under currentRules, and only then, so runs recorded before it replay without it.
 */
export const RERUN_ANSWERED_STEP_PATCH = 'saga-rerun-answered-local-step';

/** Every patch ID the saga helper uses: each is in the history of some sagas, and stays. */
export const SAGA_PATCH_IDS = [
  UNDO_ABANDONED_STEP_PATCH,
  LOCAL_STEPS_THROUGH_CANCEL_PATCH,
  CANCEL_ANSWERED_BY_OUTCOME_PATCH,
  TEMPORAL_CANCEL_PATCH,
  ACCEPTED_CANCEL_STANDS_PATCH,
  DISTINCT_STEP_NAMES_PATCH,
  OPERATOR_HOLD_PATCH,
  LOCAL_STEP_ABANDON_PATCH,
  RERUN_ANSWERED_STEP_PATCH,
] as const;

/** What a step definition's run resolves to. */
export type StepResult<D> = D extends StepDefinition<infer R> ? R : never;

export type StepKind = 'compensatable' | 'pivot' | 'retriable';

export type { SagaCause, SagaFailureInfo };

/**
 * What an undo is told: why the saga compensates. Pass it on in the undo's input as `cause`
 * (`undo: (ctx) => acts.refund({ key, cause: ctx })`): the ledger records it on the tombstone, and a
 * workflow task retried after it was lost, meeting that tombstone, unwinds for the same cause.
 * Derive nothing else in the input from it: what an undo does must not depend on the path taken.
 */
export interface CompensationContext extends SagaCause {
  /** True when the saga is unwinding because cancel was requested. */
  cancelled: boolean;
  failure: SagaFailureInfo;
  /**
   * The undo's idempotency key, `undoKey(workflowId, step)`. Not enumerable: an undo that passes
   * the context on as its `cause` sends what it always sent. Reading it throws InvalidStepKeyError
   * for a step whose name cannot make a key.
   */
  readonly key: string;
  /**
   * Set when an operator reruns this compensation (sagaRetryCompensationUpdate): the round, from 1.
   * A provider that remembers a refusal under an idempotency key would answer the rerun with it, so
   * an undo that calls one should send a key of its own for each round (`${key}/retry-${n}`); its
   * ledger key stays the same.
   */
  readonly operatorRetry?: number;
}

/** What a step's run is handed. */
export interface StepContext {
  /**
   * The step's idempotency key, `stepKey(workflowId, name)`: pass it to the step's activity, so the
   * name is written once. Reading it throws InvalidStepKeyError for a name that cannot make a key.
   */
  readonly key: string;
}

export interface StepDefinition<T> {
  name: string;
  kind: StepKind;
  /** Given the step's key (a run that ignores it is fine). */
  run: (ctx: StepContext) => Promise<T>;
  /** Required for compensatable steps; optional for a pivot (cleanup of an unknown outcome). */
  undo?: (ctx: CompensationContext) => Promise<unknown>;
  /**
   * How a cancel stops the saga before this local step, when a workflow task of the saga may have
   * been lost after it started the step (every step before it was local too, so nothing in history
   * says how far that task got). In one write it tombstones the step's key, with the cause, unless
   * an attempt already claimed it (StepLedger.abandon does that write). True: abandoned (no attempt
   * can apply it now), and the saga unwinds for the cancel. False: a lost task had started it, so
   * the step runs on (its ledger answers what it did): a compensatable step, and the cancel waits
   * for the next step; a pivot, and the cancel is refused, as it would have been after that task.
   * A local pivot needs one whenever the steps before it are local too: without it a cancel stops
   * the saga before the pivot even when a lost task had started it. For a compensatable local step
   * that calls another service it spares a call that would only be undone (a charge refunded at once).
   */
  abandon?: (ctx: StepContext & SagaCause) => Promise<boolean>;
  /**
   * The step runs as a local activity. Its effect commits while the workflow task is still open,
   * and if that task is then lost (a worker killed, a task timed out) history keeps no trace of it:
   * the retried task runs the steps again and the ledger answers them. A cancel that arrives with
   * that retry would find the saga before steps whose effects are already in the database. So a
   * compensatable local step is not interrupted by a cancel and still runs after one; the saga
   * stops at the next step that is not local, the first one a lost task cannot have reached, and
   * undoes everything before it.
   */
  local?: boolean;
}

export type SagaOutcome<R> =
  | { status: 'completed'; result: R; completedSteps: string[]; compensations: CompensationRecord[] }
  | {
      status: 'compensated' | 'cancelled';
      failure: SagaFailureInfo;
      completedSteps: string[];
      compensations: CompensationRecord[];
    };

export interface SagaOptions {
  /** Run all compensations at once instead of in reverse order. */
  parallelCompensation?: boolean;
  /** Backoff between rounds of a failing compensation or retriable step. */
  retryInitialIntervalMs?: number;
  retryMaxIntervalMs?: number;
  /** Told whenever the current step or the phase changes (to publish them, e.g. as search attributes). */
  onTransition?: (status: SagaStatus) => void;
  /** Told of every failed compensation round, so it can be counted and alerted on. */
  onCompensationFailure?: (step: string, message: string) => void;
  /**
   * Awaited when a compensation fails for good, before the next one runs: record it durably (an
   * activity), so what reads the books learns that the step was left done. Retried with the saga's
   * backoff until it succeeds or fails non-retryably. Added to a saga already running, call its activity behind patched():
   * it adds commands to the history of every saga whose compensation fails.
   */
  onCompensationFailed?: (step: string, failure: SagaFailureInfo) => Promise<void>;
  /**
   * Hold the saga for an operator when a compensation fails for good, for up to `maxMs`, instead of
   * failing at once: its phase is 'failed' and its status says `awaitingOperator`, and it answers
   * sagaRetryCompensationUpdate (its failed compensations run once more, under their own keys:
   * those that succeed are done, and when none is left failed the saga ends as it would have) and
   * sagaResolveUpdate (a manual resolution: it ends failed as CompensationFailed, the resolution in
   * its details). Past `maxMs` it fails as without a hold. Sagas whose compensation failed before
   * this was set replay without it (OPERATOR_HOLD_PATCH).
   */
  holdForOperator?: { maxMs: number };
  /** Awaited when an operator's retry made a failed compensation succeed: record it durably (an activity). */
  onCompensationRetried?: (step: string, request: OperatorRequest) => Promise<void>;
  /** Awaited when an operator settles the held saga by hand, with the compensations it settles: record it durably. */
  onResolved?: (steps: string[], request: OperatorRequest) => Promise<void>;
  /**
   * Every rule the saga helper has gained since it was first used applies, and none is asked for
   * with patched(): the saga's history carries no patch marker (and no TemporalChangeVersion
   * upsert). Only for a workflow type whose every run started under these rules: a new workflow
   * type, never one with runs in flight from before.
   */
  currentRules?: boolean;
  /**
   * For a saga whose steps run as local activities: whether the step's ledger row holds an answer
   * (completed or failed, also under a tombstone since), read by an activity. A workflow task
   * retried after a lost one runs the steps again, and the ledger answers those the lost task had
   * passed; but such a step can still fail on the way to its answer, on a failure that decides
   * nothing (its attempts ran out on a timeout, a database restart, a rate limit). Compensating
   * then would decide differently from the lost task, which went on from that answer (it may have
   * charged, made the label, compensated for a later failure). So when a local step's attempts run
   * out on a retryable failure and its row holds an answer, the step runs again after a backoff,
   * until it reads that answer. Asked until it answers, under RERUN_ANSWERED_STEP_PATCH.
   */
  stepAnswered?: (step: string) => Promise<boolean>;
}

/** An operator's action waiting for the held saga to carry it out. */
type OperatorAsk =
  | { kind: 'retry'; request: OperatorRequest; answer: (r: RetryCompensationResponse) => void }
  | { kind: 'resolve'; request: OperatorRequest; answer: (r: ResolveResponse) => void };

interface Registered {
  step: string;
  undo: (ctx: CompensationContext) => Promise<unknown>;
}

export class Saga {
  private readonly undos: Registered[] = [];
  private readonly state: SagaStatus = {
    phase: 'running',
    currentStep: null,
    completedSteps: [],
    pivotStarted: false,
    pivotCompleted: false,
    cancelRequested: false,
    compensations: [],
    retries: [],
  };
  private scope: CancellationScope | undefined;
  /** Steps in flight: one, or several under all(). */
  private readonly running: string[] = [];
  private cancelReason = '';
  /** A bug in the saga's own definition: compensated like any failure, then rethrown so the workflow fails. */
  private definitionError: ApplicationFailure | undefined;
  /** A local step has run under LOCAL_STEPS_THROUGH_CANCEL_PATCH: a cancel is honoured at a step boundary. */
  private localStepsThroughCancel = false;
  /** Steps in flight that a cancel interrupts (every step but a compensatable local one under that patch). */
  private interruptible = 0;
  /** Why an earlier task of this saga compensated, read from a tombstone a step met (see SagaCause). */
  private adoptedCause: SagaCause | undefined;
  /** The names of the steps this saga has declared so far. */
  private readonly stepNames = new Set<string>();
  /** A cancel accepted but not yet answered: the saga has not yet unwound for it or for a failure. */
  private pendingCancel: { settle: (refusal?: string) => void; promise: Promise<void> } | undefined;
  /** Every undo that ran, by step: a held saga reruns the failed ones. */
  private readonly ranUndos = new Map<string, Registered>();
  /** The operator's action the held saga is to carry out next. */
  private operatorAsk: OperatorAsk | undefined;
  /** Operator retry rounds so far. */
  private operatorRounds = 0;
  /** A cancel through Temporal came after a local pivot had been started by a lost task: the saga goes on. */
  private ignoreTemporalCancel = false;

  constructor(private readonly options: SagaOptions = {}) {}

  /** Whether a rule applies to this run: always under currentRules, else as its patch marker says. */
  private has(patchId: string): boolean {
    return this.options.currentRules === true || patched(patchId);
  }

  status(): SagaStatus {
    return cloneStatus(this.state);
  }

  /** Whether a cancel request would be honoured now, and if not, why. */
  cancellable(): { ok: true } | { ok: false; reason: string } {
    // Asking again is harmless: the saga is already unwinding for the first request.
    if (this.state.cancelRequested) return { ok: true };
    if (this.state.phase !== 'running') return { ok: false, reason: `saga already ${this.state.phase}` };
    if (this.state.pivotStarted) {
      return { ok: false, reason: 'past the point of no return: the pivot step has started' };
    }
    return { ok: true };
  }

  /**
   * Answers `status` with status() and `cancel` with requestCancel(); the cancel
   * update's validator refuses it, with the reason, once the pivot has started.
   * By default they are sagaStatusQuery and sagaCancelUpdate, which every client can use.
   */
  bindHandlers(
    status: QueryDefinition<SagaStatus> = sagaStatusQuery,
    cancel: UpdateDefinition<CancelResponse, [CancelRequest]> = sagaCancelUpdate,
  ): void {
    setHandler(status, () => this.status());
    setHandler(
      cancel,
      async (req) => {
        await this.requestCancel(req.reason ?? 'cancelled by request');
        return { accepted: true as const };
      },
      {
        validator: (_req) => {
          const check = this.cancellable();
          if (!check.ok) throw new Error(check.reason);
        },
      },
    );
    // Answered only while held (holdForOperator); refused otherwise, with the reason.
    setHandler(
      sagaRetryCompensationUpdate,
      (request) => new Promise<RetryCompensationResponse>((answer) => (this.operatorAsk = { kind: 'retry', request, answer })),
      { validator: (request) => this.checkOperatorAsk(request) },
    );
    setHandler(
      sagaResolveUpdate,
      (request) => new Promise<ResolveResponse>((answer) => (this.operatorAsk = { kind: 'resolve', request, answer })),
      { validator: (request) => this.checkOperatorAsk(request) },
    );
  }

  /** A cancel has been asked for: by the cancel update, or through Temporal (the saga's scope cancelled). */
  private cancelMet(): boolean {
    return this.state.cancelRequested || (this.scope?.consideredCancelled === true && this.has(TEMPORAL_CANCEL_PATCH));
  }

  /**
   * A cancel met at a local step with an abandon; see
   * StepDefinition.abandon. Resolves true when the step was abandoned and the saga is to unwind.
   */
  private async abandonLocalStep(def: StepDefinition<unknown>, stepCtx: StepContext): Promise<boolean> {
    if (!this.state.cancelRequested) {
      this.state.cancelRequested = true;
      this.cancelReason = 'cancelled through Temporal (workflow cancel)';
    }
    const cause = { cancelled: true, failure: { type: SagaFailure.SagaCancelled, message: this.cancelReason || 'cancelled' } };
    const ctx = Object.defineProperty({ ...cause }, 'key', { get: () => stepCtx.key, enumerable: false }) as StepContext & SagaCause;
    const abandon = def.abandon!;
    // Asked until it answers (it is idempotent): a failure that decides nothing (a database restart
    // past its attempts) must not unwind the saga with the step's undo unregistered, when a lost
    // task may have applied the step.
    const abandoned = await CancellationScope.nonCancellable(() =>
      this.untilDecided(
        () => abandon(ctx),
        (err) => {
          throw err;
        },
        () => patched(RERUN_ANSWERED_STEP_PATCH),
      ),
    );
    if (!abandoned && def.kind === 'pivot') {
      this.answerCancel('past the point of no return: the pivot step has started');
      this.state.cancelRequested = false;
      this.ignoreTemporalCancel = true;
    }
    return abandoned;
  }

  /**
   * A local step run until it answers, when an earlier task of the run got its answer: see
   * SagaOptions.stepAnswered. A failure that decides something (non-retryable: a business failure,
   * a tombstone met) or a cancel ends it at once, as does any failure where no answer is recorded.
   */
  private async untilAnswered<T>(step: string, once: () => Promise<T>): Promise<T> {
    // Shown in status().retries while it runs again, as a retriable step's rounds are.
    let record: RetryRecord | undefined;
    try {
      for (;;) {
        try {
          return await once();
        } catch (err) {
          if (isNonRetryable(err) || isCancellation(err) || !(await this.answeredEarlier(step))) throw err;
          if (!record) this.state.retries.push((record = { step, attempts: 1 }));
          record.lastError = describeFailure(err).message;
          await sleep(this.backoff(record.attempts));
          record.attempts += 1;
        }
      }
    } finally {
      if (record) this.state.retries.splice(this.state.retries.indexOf(record), 1);
    }
  }

  private async answeredEarlier(step: string): Promise<boolean> {
    const ask = this.options.stepAnswered!;
    if (!patched(RERUN_ANSWERED_STEP_PATCH)) return false;
    return this.untilDecided(() => ask(step), () => false);
  }

  /**
   * `ask` until it answers, with the saga's backoff between tries: a failure that decides something
   * (non-retryable), or one `mayRetry` refuses, is handed to `giveUp` instead.
   */
  private async untilDecided<T>(ask: () => Promise<T>, giveUp: (err: unknown) => T, mayRetry: () => boolean = () => true): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await ask();
      } catch (err) {
        if (isNonRetryable(err) || !mayRetry()) return giveUp(err);
        await sleep(this.backoff(attempt));
      }
    }
  }

  /** Refuses an operator's action unless the saga is held for one and none is under way. */
  private checkOperatorAsk(request: OperatorRequest): void {
    if (typeof request?.by !== 'string' || request.by.trim() === '') throw new Error('say who acts: `by` is required');
    if (request.note !== undefined && typeof request.note !== 'string') throw new Error('`note` must be text');
    if (!this.state.awaitingOperator) {
      throw new Error(
        this.state.phase === 'failed'
          ? 'the saga is no longer held for an operator'
          : `the saga is not held for an operator: it is ${this.state.phase} (only a saga whose compensation failed for good is)`,
      );
    }
    if (this.operatorAsk) throw new Error(`another operator action (${this.operatorAsk.kind}) is under way`);
  }

  /**
   * Stops forward progress (the in-flight step is cancelled) and unwinds. Resolves once the cancel
   * stands; rejects with CancelRefused if the saga unwinds for something else first.
   *
   * A cancel that interrupts a step in flight stands at once. One that arrives while only local
   * steps run, or before any step, waits for them: they may meet a failure (or the tombstones a lost
   * task of this saga left) that already decided how the saga unwinds, and then the cancel is
   * refused, exactly as it would have been had it come after that task.
   */
  requestCancel(reason: string): Promise<void> {
    if (this.state.cancelRequested) return this.pendingCancel?.promise ?? Promise.resolve();
    const check = this.cancellable();
    if (!check.ok) throw ApplicationFailure.nonRetryable(check.reason, SagaFailure.CancelRefused);
    this.state.cancelRequested = true;
    this.cancelReason = reason;
    if (this.interruptible === 0 && this.has(CANCEL_ANSWERED_BY_OUTCOME_PATCH)) {
      let settle!: (refusal?: string) => void;
      const promise = new Promise<void>((resolve, reject) => {
        settle = (refusal) => (refusal === undefined ? resolve() : reject(ApplicationFailure.nonRetryable(refusal, SagaFailure.CancelRefused)));
      });
      this.pendingCancel = { settle, promise };
    }
    this.scope?.cancel();
    return this.pendingCancel?.promise ?? Promise.resolve();
  }

  /** A cancel that stood at once (none waits for its answer), under ACCEPTED_CANCEL_STANDS_PATCH. */
  private acceptedCancelStands(): boolean {
    return this.pendingCancel === undefined && this.has(ACCEPTED_CANCEL_STANDS_PATCH);
  }

  /** Answers a cancel still waiting for its answer: it stands, or it is refused with the reason. */
  private answerCancel(refusal?: string): void {
    const pending = this.pendingCancel;
    this.pendingCancel = undefined;
    if (refusal !== undefined) this.state.cancelRequested = false;
    pending?.settle(refusal);
  }

  async execute<R>(body: (saga: this) => Promise<R>): Promise<SagaOutcome<R>> {
    this.scope = new CancellationScope();
    try {
      const result = await this.scope.run(async () => {
        const r = await body(this);
        // Steps ran on through an accepted cancel to the end of the body (local steps, or an
        // uninterruptible one with no step after it to stop at): the cancel still stands.
        if (this.state.cancelRequested && (this.localStepsThroughCancel || this.acceptedCancelStands())) {
          throw new CancelledFailure(this.cancelReason);
        }
        return r;
      });
      // A cancel that came while the body finished with nothing left to stop.
      this.answerCancel('the saga completed before the cancel could stop it');
      this.state.phase = 'completed';
      this.transition();
      return { status: 'completed', result, ...this.summary() };
    } catch (err) {
      this.state.currentStep = null;
      // After the pivot only retriable steps run, and they never fail: this is a bug, not a business outcome.
      if (this.state.pivotCompleted) {
        this.state.phase = 'failed';
        this.showDetails();
        throw err;
      }
      const { cancelled, failure } = this.causeOf(err);
      this.state.failure = failure;
      this.state.phase = 'compensating';
      this.transition();
      await CancellationScope.nonCancellable(() => this.compensate({ cancelled, failure }));
      let failed = this.state.compensations.filter((c) => c.status === 'failed');
      const hold = this.options.holdForOperator;
      if (failed.length > 0 && hold && this.has(OPERATOR_HOLD_PATCH)) {
        await CancellationScope.nonCancellable(() => this.holdForOperator({ cancelled, failure }, hold.maxMs));
        failed = this.state.compensations.filter((c) => c.status === 'failed');
      }
      if (this.definitionError && failed.length === 0) {
        this.state.phase = 'failed';
        this.showDetails();
        throw this.definitionError;
      }
      if (failed.length > 0) {
        this.state.phase = 'failed';
        this.showDetails();
        throw ApplicationFailure.create({
          type: SagaFailure.CompensationFailed,
          message: `${failed.length} compensation(s) failed: ${failed.map((f) => `${f.step}: ${f.lastError}`).join('; ')}`,
          nonRetryable: true,
          details: [{ failure, compensations: this.state.compensations, ...(this.state.resolution ? { resolution: this.state.resolution } : {}) }],
        });
      }
      this.state.phase = cancelled ? 'cancelled' : 'compensated';
      this.transition();
      return { status: this.state.phase, failure, ...this.summary() };
    }
  }

  /**
   * Why the saga unwinds, and the answer to a cancel waiting for one. A cause adopted from a
   * tombstone comes first: an earlier task of this saga decided it. Then a cancel that stood (it
   * interrupted a step, or the saga stopped for it at a step boundary); a cancel still waiting is
   * refused when the steps it waited for failed first.
   */
  private causeOf(err: unknown): SagaCause {
    const adopted = this.adoptedCause;
    if (adopted) {
      this.answerCancel(adopted.cancelled ? undefined : refusal(adopted.failure));
      if (adopted.cancelled) {
        this.state.cancelRequested = true;
        this.cancelReason = adopted.failure.message;
      }
      return adopted;
    }
    // A cancel through Temporal reaches the saga only as its scope cancelled, with no request of its own.
    if (!this.state.cancelRequested && !this.ignoreTemporalCancel && this.scope?.consideredCancelled && this.has(TEMPORAL_CANCEL_PATCH)) {
      this.state.cancelRequested = true;
      this.cancelReason = 'cancelled through Temporal (workflow cancel)';
    }
    const cancelled = this.state.cancelRequested && (this.pendingCancel === undefined || isCancellation(err));
    const failure = cancelled ? { type: SagaFailure.SagaCancelled, message: this.cancelReason || 'cancelled' } : describeFailure(err);
    this.answerCancel(cancelled ? undefined : refusal(failure));
    return { cancelled, failure };
  }

  async step<T>(def: StepDefinition<T>): Promise<T> {
    const repeated = this.stepNames.has(def.name);
    this.stepNames.add(def.name);
    const defect =
      definitionDefect(def, this.state.pivotCompleted) ??
      (repeated && this.has(DISTINCT_STEP_NAMES_PATCH)
        ? `step ${def.name} is declared twice in this saga: each step needs a name of its own (the name makes its idempotency key)`
        : undefined);
    if (defect) {
      this.definitionError = ApplicationFailure.nonRetryable(defect, SagaFailure.SagaDefinition);
      throw this.definitionError;
    }
    // A compensatable local step runs whether or not a cancel has been accepted (see `local`).
    // Sagas that ran their local steps before that rule replay without it.
    const throughCancel = def.local === true && def.kind === 'compensatable' && this.has(LOCAL_STEPS_THROUGH_CANCEL_PATCH);
    const stepCtx = stepContext(def.name);
    const once = () => def.run(stepCtx);
    const run = def.local === true && this.options.stepAnswered ? () => this.untilAnswered(def.name, once) : once;
    if (throughCancel) this.localStepsThroughCancel = true;
    // A cancel accepted before this step (while the previous one finished anyway, or before the
    // saga's first step) stops the saga here, before the pivot can start. The step is abandoned
    // but its undo still runs: it tombstones the step, so no late attempt can apply it, and it
    // cleans up what was written on the saga's behalf before it started (the order row the API
    // inserted). Sagas that reached this point before that rule replay without it.
    const abandonable = def.local === true && def.abandon !== undefined && (def.kind === 'pivot' || def.kind === 'compensatable');
    if (abandonable && this.cancelMet() && this.has(LOCAL_STEP_ABANDON_PATCH)) {
      if (await this.abandonLocalStep(def, stepCtx)) {
        // Its undo still runs, as an abandoned step's does: it finds the step never ran, and leaves the compensation's row.
        if (def.undo) this.undos.push({ step: def.name, undo: def.undo });
        throw new CancelledFailure(this.cancelReason);
      }
    } else if (this.state.cancelRequested && !throughCancel) {
      if (def.undo && this.has(UNDO_ABANDONED_STEP_PATCH)) this.undos.push({ step: def.name, undo: def.undo });
      throw new CancelledFailure(this.cancelReason);
    }
    this.running.push(def.name);
    this.state.currentStep = this.running.join(', ');
    this.transition();
    if (def.undo) this.undos.push({ step: def.name, undo: def.undo });
    let result: T;
    if (!throughCancel) this.interruptible += 1;
    try {
      if (def.kind === 'compensatable') {
        result = throughCancel ? await CancellationScope.nonCancellable(run) : await run();
      } else if (def.kind === 'pivot') {
        this.state.pivotStarted = true;
        // Once started, the pivot runs to its end even if the workflow is cancelled.
        result = await CancellationScope.nonCancellable(run);
        this.state.pivotCompleted = true;
        this.undos.length = 0;
      } else {
        result = await CancellationScope.nonCancellable(() => this.retryUntilSuccess(def.name, run));
      }
    } catch (err) {
      // The step met a tombstone an earlier (lost) task of this saga left when it compensated.
      this.adoptedCause ??= recordedCause(err);
      throw err;
    } finally {
      if (!throughCancel) this.interruptible -= 1;
      this.running.splice(this.running.indexOf(def.name), 1);
      this.state.currentStep = this.running.length ? this.running.join(', ') : null;
    }
    this.state.completedSteps.push(def.name);
    return result;
  }

  /**
   * Runs compensatable steps at once. Each registers its undo before its call,
   * as step() does. All of them settle before this returns or throws, so none is
   * still running when compensation starts; then it fails with the first failure
   * (the others' undos run too), or returns the results in order.
   */
  async all<T extends readonly StepDefinition<unknown>[]>(defs: T): Promise<{ -readonly [K in keyof T]: StepResult<T[K]> }> {
    const serial = defs.find((d) => d.kind !== 'compensatable');
    if (serial) {
      this.definitionError = ApplicationFailure.nonRetryable(
        `step ${serial.name} is ${serial.kind}: only compensatable steps run in parallel`,
        SagaFailure.SagaDefinition,
      );
      throw this.definitionError;
    }
    const settled = await Promise.allSettled(defs.map((d) => this.step(d)));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: StepResult<T[K]> };
  }

  private transition(): void {
    this.showDetails();
    this.options.onTransition?.(this.status());
  }

  /**
   * The Temporal UI's "current details" of the run: the phase in words, so a
   * compensated or cancelled saga (which closes as Completed: it ended as
   * designed) does not pass for a successful one. No command, nothing in history.
   */
  private showDetails(): void {
    setCurrentDetails(describeSagaStatus(this.status()));
  }

  private summary() {
    return { completedSteps: [...this.state.completedSteps], compensations: this.state.compensations.map((c) => ({ ...c })) };
  }

  private async compensate(ctx: SagaCause): Promise<void> {
    const pending = [...this.undos].reverse();
    this.undos.length = 0;
    for (const u of pending) this.ranUndos.set(u.step, u);
    const records = pending.map((u) => {
      const record: CompensationRecord = { step: u.step, status: 'pending', attempts: 0 };
      this.state.compensations.push(record);
      return { u, record };
    });
    if (this.options.parallelCompensation) {
      await Promise.all(records.map(({ u, record }) => this.runCompensation(u, record, ctx)));
    } else {
      for (const { u, record } of records) await this.runCompensation(u, record, ctx);
    }
  }

  /**
   * Runs an undo until it succeeds or fails for good. An operator's rerun (`operatorRetry`, its
   * round) is one round: the undo's activity retries on its own policy, and whatever it then
   * throws leaves the compensation failed, for the operator to see.
   */
  private async runCompensation(u: Registered, record: CompensationRecord, ctx: SagaCause, operatorRetry?: number): Promise<void> {
    for (;;) {
      record.attempts += 1;
      record.status = 'running';
      try {
        await u.undo(compensationContext(ctx, u.step, operatorRetry));
        record.status = 'done';
        return;
      } catch (err) {
        record.lastError = describeFailure(err).message;
        this.options.onCompensationFailure?.(u.step, record.lastError);
        if (operatorRetry !== undefined) {
          record.status = 'failed';
          return;
        }
        if (isNonRetryable(err)) {
          record.status = 'failed';
          await this.recordFailedCompensation(u.step, describeFailure(err));
          return;
        }
        record.status = 'retrying';
        await sleep(this.backoff(record.attempts));
      }
    }
  }

  private async recordFailedCompensation(step: string, failure: SagaFailureInfo): Promise<void> {
    const record = this.options.onCompensationFailed;
    if (record) await this.persistently(() => record(step, failure));
  }

  /** Runs a recording hook until it succeeds; one a retry cannot help is left (the saga's own outcome still says what happened). */
  private async persistently(record: () => Promise<void>): Promise<void> {
    return this.untilDecided(record, () => undefined);
  }

  /**
   * Held for an operator (holdForOperator) until every failed compensation succeeded on a retry,
   * an operator settled them by hand, or `maxMs` passed. Each action is carried out here, in the
   * workflow's own order, and answered once done.
   */
  private async holdForOperator(cause: SagaCause, maxMs: number): Promise<void> {
    const until = Date.now() + maxMs;
    this.state.phase = 'failed';
    this.state.awaitingOperator = true;
    this.transition();
    while (this.state.awaitingOperator) {
      const left = until - Date.now();
      if (left <= 0 || !(await condition(() => this.operatorAsk !== undefined, left))) break;
      const ask = this.operatorAsk!;
      const failed = this.state.compensations.filter((c) => c.status === 'failed');
      const request: OperatorRequest = { by: ask.request.by, ...(ask.request.note !== undefined ? { note: ask.request.note } : {}) };
      if (ask.kind === 'resolve') {
        const steps = failed.map((c) => c.step);
        const hook = this.options.onResolved;
        if (hook) await this.persistently(() => hook(steps, request));
        this.state.resolution = { how: 'manual', ...request };
        this.state.awaitingOperator = false;
        this.operatorAsk = undefined;
        this.showDetails();
        ask.answer({ resolved: true, steps });
        continue;
      }
      this.operatorRounds += 1;
      const round = this.operatorRounds;
      this.state.phase = 'compensating';
      this.transition();
      const retried: string[] = [];
      const stillFailing: RetryCompensationResponse['stillFailing'] = [];
      for (const record of failed) {
        await this.runCompensation(this.ranUndos.get(record.step)!, record, cause, round);
        if (record.status === 'done') {
          retried.push(record.step);
          const hook = this.options.onCompensationRetried;
          if (hook) await this.persistently(() => hook(record.step, request));
        } else {
          stillFailing.push({ step: record.step, error: record.lastError ?? 'failed' });
        }
      }
      if (stillFailing.length === 0) {
        this.state.resolution = { how: 'retried', ...request };
        this.state.awaitingOperator = false;
      } else {
        this.state.phase = 'failed';
      }
      this.operatorAsk = undefined;
      this.transition();
      ask.answer({ retried, stillFailing });
    }
    this.state.awaitingOperator = false;
  }

  private async retryUntilSuccess<T>(step: string, run: () => Promise<T>): Promise<T> {
    const record: RetryRecord = { step, attempts: 0 };
    this.state.retries.push(record);
    for (;;) {
      record.attempts += 1;
      try {
        const result = await run();
        this.state.retries.splice(this.state.retries.indexOf(record), 1);
        return result;
      } catch (err) {
        record.lastError = describeFailure(err).message;
        await sleep(this.backoff(record.attempts));
      }
    }
  }

  private backoff(attempt: number): number {
    return backoffMs(attempt, this.options.retryInitialIntervalMs, this.options.retryMaxIntervalMs);
  }
}

/** A step's context; its key is built when read (a name that cannot make a key fails only then). */
function stepContext(step: string): StepContext {
  return Object.defineProperty({}, 'key', { get: () => stepKey(workflowInfo().workflowId, step), enumerable: false }) as StepContext;
}

/** An undo's context: the saga's cause, and the undo's key (not enumerable: see CompensationContext). */
function compensationContext(cause: SagaCause, step: string, operatorRetry?: number): CompensationContext {
  const ctx = { cancelled: cause.cancelled, failure: cause.failure, ...(operatorRetry !== undefined ? { operatorRetry } : {}) };
  return Object.defineProperty(ctx, 'key', { get: () => undoKey(workflowInfo().workflowId, step), enumerable: false }) as CompensationContext;
}

function refusal(failure: SagaFailureInfo): string {
  return `the saga is already compensating for ${failure.type}: ${failure.message}`;
}

function definitionDefect(def: StepDefinition<unknown>, pivotCompleted: boolean): string | undefined {
  if (def.kind === 'retriable' && !pivotCompleted) return `retriable step ${def.name} must follow a completed pivot`;
  if (def.kind !== 'retriable' && pivotCompleted) return `step ${def.name} cannot follow the pivot: only retriable steps can`;
  if (def.kind === 'compensatable' && !def.undo) return `compensatable step ${def.name} needs an undo`;
  return undefined;
}

/**
 * The saga helper's own failure types, and how it reads any failure. Failures
 * are matched by their `type` string, never by class (bundlers and test module
 * registries break `instanceof`). Pure: importable from workflow code.
 */
export const SagaFailure = {
  /** The saga was cancelled by request and has been compensated. */
  SagaCancelled: 'SagaCancelled',
  /** One or more compensations failed for good; details list each. */
  CompensationFailed: 'CompensationFailed',
  /** The saga's own definition is wrong (a bug): e.g. a retriable step before the pivot. */
  SagaDefinition: 'SagaDefinition',
  /** A cancel arrived after the pivot had started. */
  CancelRefused: 'CancelRefused',
} as const;

/** Why a saga unwound: the failure type and message of what stopped it. */
export interface SagaFailureInfo {
  type: string;
  message: string;
}

/**
 * Why a saga compensates: on request (cancelled) or because of a failure. Each
 * compensation hands it to its undo (CompensationContext), the undo passes it on
 * in its input as `cause`, and the ledger records it on the tombstone it leaves.
 * A workflow task retried after it was lost meets that tombstone and unwinds for
 * the same cause, so its decisions are the lost task's.
 */
export interface SagaCause {
  cancelled: boolean;
  failure: SagaFailureInfo;
}

/** The detail a StepCancelled failure carries when the tombstone it met recorded its saga's cause. */
export interface RecordedCauseDetail {
  sagaCause: SagaCause;
}

/** The ledger's failure type for an attempt that met its step's tombstone; it applies nothing. */
export const STEP_CANCELLED = 'StepCancelled';

export function isSagaCause(value: unknown): value is SagaCause {
  const c = value as Partial<SagaCause> | null;
  return (
    typeof c === 'object' &&
    c !== null &&
    typeof c.cancelled === 'boolean' &&
    typeof c.failure === 'object' &&
    c.failure !== null &&
    typeof c.failure.type === 'string' &&
    typeof c.failure.message === 'string'
  );
}

/**
 * The saga cause a StepCancelled failure carries, anywhere in the cause chain:
 * the step met a tombstone left by an earlier task of this saga that decided to
 * compensate, for that cause.
 */
export function recordedCause(err: unknown): SagaCause | undefined {
  for (let e = err as (FailureLike & { details?: unknown }) | undefined, depth = 0; e && depth < 10; e = e.cause as FailureLike, depth++) {
    if (e.type === STEP_CANCELLED && Array.isArray(e.details)) {
      const detail = e.details[0] as Partial<RecordedCauseDetail> | undefined;
      if (detail && isSagaCause(detail.sagaCause)) {
        return { cancelled: detail.sagaCause.cancelled, failure: { type: detail.sagaCause.failure.type, message: detail.sagaCause.failure.message } };
      }
    }
  }
  return undefined;
}

interface FailureLike {
  type?: unknown;
  message?: unknown;
  nonRetryable?: unknown;
  cause?: unknown;
}

/** The innermost typed failure: an ActivityFailure wraps the ApplicationFailure that says what happened. */
export function describeFailure(err: unknown): { type: string; message: string } {
  let type: string | undefined;
  let message: string | undefined;
  for (let e = err as FailureLike | undefined, depth = 0; e && depth < 10; e = e.cause as FailureLike, depth++) {
    if (typeof e.message === 'string' && e.message) message = e.message;
    if (typeof e.type === 'string' && e.type) {
      type = e.type;
      break;
    }
  }
  return { type: type ?? 'Unknown', message: message ?? String(err) };
}

/** Whether any failure in the cause chain says a retry cannot help. */
export function isNonRetryable(err: unknown): boolean {
  for (let e = err as FailureLike | undefined, depth = 0; e && depth < 10; e = e.cause as FailureLike, depth++) {
    if (e.nonRetryable === true) return true;
  }
  return false;
}

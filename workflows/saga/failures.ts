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

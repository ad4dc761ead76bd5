/**
 * Failure type strings that cross Temporal. Workflows and activities match
 * failures by these strings, never by class (bundlers and test registries break
 * `instanceof`). This module is pure so the workflow sandbox can import it.
 */
export const FailureType = {
  OutOfStock: 'OutOfStock',
  PaymentDeclined: 'PaymentDeclined',
  FraudSuspected: 'FraudSuspected',
  ProviderUnavailable: 'ProviderUnavailable',
  IdempotencyConflict: 'IdempotencyConflict',
  StepCancelled: 'StepCancelled',
  InvalidInput: 'InvalidInput',
  SagaCancelled: 'SagaCancelled',
  CompensationFailed: 'CompensationFailed',
  /** PostgreSQL refused a step's data (SQLSTATE class 22 or 23): no retry can change that. */
  DataRejected: 'DataRejected',
} as const;

export type FailureTypeName = (typeof FailureType)[keyof typeof FailureType];

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

export function isNonRetryable(err: unknown): boolean {
  for (let e = err as FailureLike | undefined, depth = 0; e && depth < 10; e = e.cause as FailureLike, depth++) {
    if (e.nonRetryable === true) return true;
  }
  return false;
}

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
} as const;

export type FailureTypeName = (typeof FailureType)[keyof typeof FailureType];

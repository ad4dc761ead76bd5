/**
 * The order saga's business failure types: what its activities raise and its
 * callers see. Matched by these strings, never by class. The saga helper's own
 * types are in saga/failures.ts, the ledger's in src/ledger. Pure: importable
 * from workflow code.
 */
export const FailureType = {
  OutOfStock: 'OutOfStock',
  PaymentDeclined: 'PaymentDeclined',
  FraudSuspected: 'FraudSuspected',
  ProviderUnavailable: 'ProviderUnavailable',
  /** The input contradicts what is stored (an order ID taken with other contents, a malformed answer). */
  InvalidInput: 'InvalidInput',
} as const;

export type FailureTypeName = (typeof FailureType)[keyof typeof FailureType];

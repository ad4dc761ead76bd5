/** Shapes shared by the workflow, the activities and the callers. Types only. */
import type { SagaCause } from '@sagaflow/toolkit/workflow';

export interface OrderItem {
  sku: string;
  quantity: number;
}

export interface Money {
  /** Integer minor units (cents); never a float. */
  amountMinor: number;
  /** ISO 4217, upper case. */
  currency: string;
}

export interface Address {
  name: string;
  line1: string;
  city: string;
  postalCode: string;
  country: string;
}

export interface OrderInput {
  orderId: string;
  customerId: string;
  items: OrderItem[];
  amount: Money;
  paymentToken: string;
  shippingAddress: Address;
}

export interface OrderSagaResult {
  orderId: string;
  status: 'completed' | 'compensated' | 'cancelled';
  chargeId?: string;
  trackingNumber?: string;
  failure?: { type: string; message: string };
  completedSteps: string[];
  compensations: { step: string; status: string; attempts: number }[];
}

export interface StepInput {
  /** The step's idempotency key (saga/keys.ts): stable across retries, independent of run ID and attempt. */
  key: string;
  orderId: string;
}

/**
 * A compensation's input: `key` is `<workflowId>/<step>/undo`; the forward key is parsed from it.
 * `cause` is why the saga compensates; the ledger records it and leaves it out of the fingerprint.
 * Absent in undos scheduled before it was added.
 */
/**
 * `cause.operatorRetry`: the round of an operator's retry of this compensation (a held saga,
 * `sagaflow sagas retry-compensation`): an undo that calls a provider sends a key of its own for
 * each round (`providerKey`), since a provider may answer a key it refused once with that refusal.
 */
export type UndoInput = StepInput & { cause?: SagaCause & { operatorRetry?: number } };

/** The Idempotency-Key an undo sends its provider: the undo's key, or one of its own per operator retry round. */
export const providerKey = (input: UndoInput): string =>
  input.cause?.operatorRetry !== undefined ? `${input.key}/retry-${input.cause.operatorRetry}` : input.key;

import type { Ledger } from '@sagaflow/toolkit/ledger';
import { Step } from '../workflows/order/steps';
import type { StepInput, UndoInput } from '../workflows/order/types';

type AbandonInput = StepInput & { cause?: UndoInput['cause'] };

/**
 * How orderSagaV2 stops before a step that calls another service when a cancel has come: the
 * step's key tombstoned with the cause, unless an attempt already claimed it (a workflow task lost
 * after it started the step). True: abandoned, no attempt can make the call now. False: it had
 * started, and the saga runs it on (StepDefinition.abandon).
 */
export function createAbandonActivities(books: Ledger) {
  const charge = books.step(Step.chargePayment);
  const shipment = books.step(Step.createShipment);
  return {
    abandonCharge: (input: AbandonInput): Promise<boolean> => charge.abandon(input.key, input),
    abandonShipment: (input: AbandonInput): Promise<boolean> => shipment.abandon(input.key, input),
  };
}

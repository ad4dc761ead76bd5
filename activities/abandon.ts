import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { holdsAnswer, type Ledger } from '@sagaflow/toolkit/ledger';
import { stepKey } from '@sagaflow/toolkit/workflow';
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

/**
 * What orderSagaV2 asks when a step's attempts ran out on a failure that decides nothing
 * (SagaOptions.stepAnswered): whether its ledger row holds an answer, got by an earlier (lost)
 * workflow task of the run. Read from the run's own rows: its workflow ID is the activity's, never
 * an input.
 */
export function createStepAnsweredActivities(books: Ledger) {
  return {
    async stepAnswered(input: { step: string }): Promise<boolean> {
      const workflowId = Context.current().info.workflowExecution?.workflowId;
      if (workflowId === undefined) throw ApplicationFailure.nonRetryable('stepAnswered reads the rows of the workflow it runs for: run it from one');
      return holdsAnswer(await books.read(workflowId), stepKey(workflowId, input.step));
    },
  };
}

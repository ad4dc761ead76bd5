/**
 * sagaflow/workflow: the generic saga helper for Temporal workflows, its
 * failure types and the idempotency key format. Nothing here knows any domain.
 */
export {
  Saga,
  describeSagaStatus,
  UNDO_ABANDONED_STEP_PATCH,
  type CompensationContext,
  type CompensationRecord,
  type RetryRecord,
  type SagaOptions,
  type SagaOutcome,
  type SagaPhase,
  type SagaStatus,
  type StepDefinition,
  type StepKind,
  type StepResult,
  type SagaFailureInfo,
  type CancelRequest,
  type CancelResponse,
} from './saga';
export { SagaFailure, describeFailure, isNonRetryable } from './failures';
export { InvalidStepKeyError, assertStepName, parseStepKey, sagaKeys, stepKey, undoKey, type StepKey } from './keys';

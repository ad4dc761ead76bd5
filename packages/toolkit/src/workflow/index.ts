/**
 * sagaflow/workflow: the generic saga helper for Temporal workflows, its
 * failure types and the idempotency key format. Nothing here knows any domain.
 */
export {
  Saga,
  describeSagaStatus,
  UNDO_ABANDONED_STEP_PATCH,
  LOCAL_STEPS_THROUGH_CANCEL_PATCH,
  CANCEL_ANSWERED_BY_OUTCOME_PATCH,
  TEMPORAL_CANCEL_PATCH,
  ACCEPTED_CANCEL_STANDS_PATCH,
  DISTINCT_STEP_NAMES_PATCH,
  OPERATOR_HOLD_PATCH,
  LOCAL_STEP_ABANDON_PATCH,
  RERUN_ANSWERED_STEP_PATCH,
  SAGA_PATCH_IDS,
  sagaStatusQuery,
  sagaCancelUpdate,
  sagaRetryCompensationUpdate,
  sagaResolveUpdate,
  type CompensationContext,
  type StepContext,
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
  type SagaCause,
  type CancelRequest,
  type CancelResponse,
  type OperatorRequest,
  type ResolveResponse,
  type RetryCompensationResponse,
} from './saga';
export { SagaFailure, describeFailure, isNonRetryable, recordedCause, type RecordedCauseDetail } from './failures';
export { InvalidStepKeyError, assertStepName, parseStepKey, sagaKeys, stepKey, undoKey, type StepKey } from './keys';

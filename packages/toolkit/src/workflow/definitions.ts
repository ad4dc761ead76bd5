import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { SagaStatus } from './status';

/**
 * The query and update every Saga answers once its workflow calls `saga.bindHandlers()`: any
 * client can ask any saga for its status, or ask it to cancel, with these, e.g.
 * `handle.query(sagaStatusQuery)`, `handle.executeUpdate(sagaCancelUpdate, { args: [{ reason }] })`.
 * Their names ('status', 'cancel') are part of every running saga's interface: never rename them.
 */

/** The argument of a saga's cancel update. */
export interface CancelRequest {
  reason?: string;
}

/** The answer of a saga's cancel update once accepted; a refusal fails the update with the reason. */
export interface CancelResponse {
  accepted: true;
}

/** The saga's status(): its phase, its current step, and its compensations and retries so far. */
export const sagaStatusQuery = defineQuery<SagaStatus>('status');

/** Cancels a saga before its pivot; refused (the update fails, with the reason) once the pivot has started. */
export const sagaCancelUpdate = defineUpdate<CancelResponse, [CancelRequest]>('cancel');

/**
 * Who asks an operator's action of a saga, and why: recorded with what it does. `by` names the
 * person or the credential (`cli:ada`, `admin:ops-team`).
 */
export interface OperatorRequest {
  by: string;
  note?: string;
}

/** The answer of a retry of a held saga's failed compensations: the ones that now succeeded, and the ones that failed again. */
export interface RetryCompensationResponse {
  retried: string[];
  stillFailing: { step: string; error: string }[];
}

/** The answer of a manual resolution: the compensations it accepts as settled by hand. */
export interface ResolveResponse {
  resolved: true;
  steps: string[];
}

/**
 * A saga held for an operator (`holdForOperator`: a compensation failed for good) runs its failed
 * compensations once more, under their own keys, once the cause is fixed; refused unless held.
 * Name part of every held saga's interface: never rename it.
 */
export const sagaRetryCompensationUpdate = defineUpdate<RetryCompensationResponse, [OperatorRequest]>('retryCompensation');

/**
 * A saga held for an operator records a manual resolution (who, why) of its failed compensations
 * and ends, failed as CompensationFailed with the resolution in its details; refused unless held.
 */
export const sagaResolveUpdate = defineUpdate<ResolveResponse, [OperatorRequest]>('resolve');

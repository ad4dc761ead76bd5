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

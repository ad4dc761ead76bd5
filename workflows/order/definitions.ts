/**
 * The order saga's query and update definitions and its workflow type: what a caller needs to
 * talk to a running saga, apart from the saga's body, so the API never loads workflow code.
 */
import { sagaCancelUpdate, sagaResolveUpdate, sagaRetryCompensationUpdate, sagaStatusQuery } from '@sagaflow/toolkit/workflow';
import type { OrderInput, OrderSagaResult } from './types';

/** The workflow's signature: `WorkflowHandle<OrderSagaWorkflow>` types a handle without importing the body. */
export type OrderSagaWorkflow = (order: OrderInput) => Promise<OrderSagaResult>;

/** The workflow type the worker registers (the exported function's name). */
export const ORDER_SAGA_WORKFLOW_TYPE = 'orderSaga';

/** The order saga answers the saga helper's standard query and update (saga.bindHandlers). */
export const statusQuery = sagaStatusQuery;
export const cancelUpdate = sagaCancelUpdate;
/** A saga held for an operator (a compensation failed for good) answers these two; refused otherwise. */
export const retryCompensationUpdate = sagaRetryCompensationUpdate;
export const resolveUpdate = sagaResolveUpdate;
export type { OperatorRequest, ResolveResponse, RetryCompensationResponse } from '@sagaflow/toolkit/workflow';

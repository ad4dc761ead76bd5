/**
 * The order saga's query and update definitions and its workflow type: what a caller needs to
 * talk to a running saga, apart from the saga's body, so the API never loads workflow code.
 */
import { sagaCancelUpdate, sagaResolveUpdate, sagaRetryCompensationUpdate, sagaStatusQuery } from '@sagaflow/toolkit/workflow';
import type { OrderInput, OrderSagaResult } from './types';

/** The workflow's signature: `WorkflowHandle<OrderSagaWorkflow>` types a handle without importing the body. */
export type OrderSagaWorkflow = (order: OrderInput) => Promise<OrderSagaResult>;

/** The workflow type new sagas start as (the exported function's name): every step local, one workflow task. */
export const ORDER_SAGA_WORKFLOW_TYPE = 'orderSagaV2';
/** The first type, its payment and shipment on their own queues: runs started before orderSagaV2. */
export const ORDER_SAGA_V1_WORKFLOW_TYPE = 'orderSaga';
/** Every workflow type of the order saga that may have runs, for visibility queries. */
export const ORDER_SAGA_WORKFLOW_TYPES = [ORDER_SAGA_V1_WORKFLOW_TYPE, ORDER_SAGA_WORKFLOW_TYPE] as const;
/** A visibility query clause that matches every order saga, of whichever type. */
export const ORDER_SAGA_TYPES_QUERY = `WorkflowType IN (${ORDER_SAGA_WORKFLOW_TYPES.map((t) => `'${t}'`).join(', ')})`;

/** The order saga answers the saga helper's standard query and update (saga.bindHandlers). */
export const statusQuery = sagaStatusQuery;
export const cancelUpdate = sagaCancelUpdate;
/** A saga held for an operator (a compensation failed for good) answers these two; refused otherwise. */
export const retryCompensationUpdate = sagaRetryCompensationUpdate;
export const resolveUpdate = sagaResolveUpdate;
export type { OperatorRequest, ResolveResponse, RetryCompensationResponse } from '@sagaflow/toolkit/workflow';

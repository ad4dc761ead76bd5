import { WithStartWorkflowOperation, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import type { Db } from '../db/pool';
import { findOrder, markSagaStarted, toOrderInput, type OrderRow } from '../orders/repository';
import { orderSagaStart } from '../orders/start';
import { cancelUpdate, type OrderSagaWorkflow } from '../../workflows/order/definitions';

export interface CancelOrderDeps {
  db: Db;
  temporal: Client;
  taskQueue: string;
  searchAttributes?: boolean;
  /** The workflow type sagas start as (SAGAFLOW_ORDER_SAGA_TYPE); the order saga's current one when unset. */
  workflowType?: string;
}

/** What a cancel comes to; the caller turns it into its protocol's answer. */
export type CancelOrderOutcome =
  | { kind: 'accepted' }
  | { kind: 'refused'; reason: string }
  | { kind: 'unavailable'; message: string };

/**
 * Cancels an order's saga. Accepted means the order will end `cancelled` with
 * its stock and money released, whatever moment the cancel arrives at: before
 * the first step, while no worker runs, or for an order whose saga was never
 * started (it is started, then cancelled before its first step). A repeated
 * cancel of a cancelled order is accepted again; an order that ended otherwise,
 * or whose pivot has started, is refused with the reason.
 */
export async function cancelOrder(deps: CancelOrderDeps, row: OrderRow, reason: string): Promise<CancelOrderOutcome> {
  const refused = (status: string): CancelOrderOutcome => ({ kind: 'refused', reason: `the order is already ${status}` });
  if (row.status === 'cancelled') return { kind: 'accepted' };
  if (row.status !== 'pending') return refused(row.status);
  const handle = deps.temporal.workflow.getHandle(row.workflow_id);
  const send = () => handle.executeUpdate(cancelUpdate, { args: [{ reason }] });
  try {
    try {
      await send();
      return { kind: 'accepted' };
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
    // Not found is either a saga that was never started (its request died after the commit)
    // or one that has closed; the server's description tells which.
    const described = await handle.describe().catch((e: unknown) => {
      if (e instanceof WorkflowNotFoundError) return undefined;
      throw e;
    });
    if (described) {
      // It closed between our read and the update: the order row says how it ended.
      const now = await findOrder(deps.db, row.id);
      if (now?.status === 'cancelled') return { kind: 'accepted' };
      return refused(now && now.status !== 'pending' ? now.status : `closed (saga ${described.status.name.toLowerCase()})`);
    }
    // Start the abandoned saga (idempotent by workflow ID) with the cancel in the same request, so
    // the saga has it before its first step: a worker that took the start at once runs an
    // orderSagaV2's steps in one task, and a cancel sent after the start would come too late.
    const start = orderSagaStart(toOrderInput(row), deps.taskQueue, { searchAttributes: deps.searchAttributes, workflowType: deps.workflowType });
    const operation = new WithStartWorkflowOperation<OrderSagaWorkflow>(start.workflowType, start.options);
    try {
      await deps.temporal.workflow.executeUpdateWithStart(cancelUpdate, { args: [{ reason }], startWorkflowOperation: operation });
    } finally {
      if (await operation.workflowHandle().then(() => true, () => false)) await markSagaStarted(deps.db, row.id);
    }
    return { kind: 'accepted' };
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) return { kind: 'refused', reason: err.cause?.message ?? err.message };
    return { kind: 'unavailable', message: `could not reach the saga: ${(err as Error).message}` };
  }
}

import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { orderSaga } from '../../workflows/order-saga';
import { orderWorkflowId } from '../../workflows/order/ids';
import { parseOrderInput } from './schema';
import { OrderIdKey, SagaStatusKey } from '../../workflows/order/search-attributes';

/**
 * Starts the saga for an order, or returns the one that already exists: the
 * workflow ID is derived from the order, a running saga is attached to, and a
 * closed one is never started again.
 */
export async function startOrderSaga(
  client: Client,
  input: unknown,
  taskQueue: string,
  /** Off for a namespace where the saga's search attributes are not registered. */
  opts: { searchAttributes?: boolean } = {},
): Promise<WorkflowHandle<typeof orderSaga>> {
  const order = parseOrderInput(input);
  const workflowId = orderWorkflowId(order.orderId);
  try {
    return await client.workflow.start<typeof orderSaga>('orderSaga', {
      workflowId,
      taskQueue,
      args: [order],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      typedSearchAttributes:
        opts.searchAttributes === false
          ? undefined
          : [
              { key: OrderIdKey, value: order.orderId },
              { key: SagaStatusKey, value: 'running' },
            ],
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      return client.workflow.getHandle<typeof orderSaga>(workflowId);
    }
    throw err;
  }
}

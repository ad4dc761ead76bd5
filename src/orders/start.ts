import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ORDER_SAGA_WORKFLOW_TYPE, type OrderSagaWorkflow } from '../../workflows/order/definitions';
import { orderWorkflowId } from '../../workflows/order/ids';
import { parseOrderInput } from './schema';
import type { OrderInput } from '../../workflows/order/types';
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
): Promise<WorkflowHandle<OrderSagaWorkflow>> {
  const order = parseOrderInput(input);
  const workflowId = orderWorkflowId(order.orderId);
  try {
    return await client.workflow.start<OrderSagaWorkflow>(ORDER_SAGA_WORKFLOW_TYPE, {
      workflowId,
      taskQueue,
      args: [order],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      // What the Temporal UI shows in its list and on the run's page; the outcome is in
      // SagaStatus and in the run's current details (the saga sets them as it goes).
      staticSummary: orderSummary(order),
      staticDetails: orderDetails(order),
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
      return client.workflow.getHandle<OrderSagaWorkflow>(workflowId);
    }
    throw err;
  }
}

/** An amount in minor units as the currency writes it (2 decimals for EUR, none for JPY). */
function money(m: { amountMinor: number; currency: string }): string {
  const digits = new Intl.NumberFormat('en', { style: 'currency', currency: m.currency }).resolvedOptions().maximumFractionDigits ?? 2;
  return `${(m.amountMinor / 10 ** digits).toFixed(digits)} ${m.currency}`;
}

/** One line for the Temporal UI: the order, its items and amount. */
export function orderSummary(order: OrderInput): string {
  const units = order.items.reduce((n, i) => n + i.quantity, 0);
  return `Order ${order.orderId}: ${units} item${units === 1 ? '' : 's'}, ${money(order.amount)}`;
}

function orderDetails(order: OrderInput): string {
  return [
    `**Order** ${order.orderId} for customer ${order.customerId}`,
    `**Items**: ${order.items.map((i) => `${i.quantity} × ${i.sku}`).join(', ')}`,
    `**Amount**: ${money(order.amount)}`,
    `**Ships to**: ${order.shippingAddress.city}, ${order.shippingAddress.country}`,
  ].join('\n\n');
}

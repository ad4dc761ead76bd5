import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import { ORDER_SAGA_WORKFLOW_TYPE, type OrderSagaWorkflow } from '../../workflows/order/definitions';
import { orderWorkflowId } from '../../workflows/order/ids';
import { parseOrderInput } from './schema';
import type { OrderInput } from '../../workflows/order/types';
import { OrderIdKey, SagaStatusKey } from '../../workflows/order/search-attributes';

export interface StartOptions {
  /** Off for a namespace where the saga's search attributes are not registered. */
  searchAttributes?: boolean;
  /**
   * Eager workflow start: the server hands the saga's first workflow task back in the start's
   * answer, to a workflow worker in this process on `taskQueue` sharing the client's connection,
   * instead of through a poll. A server that does not allow it (system.enableEagerWorkflowStart),
   * or a process with no free worker slot, starts it the usual way.
   */
  eager?: boolean;
  /** Another workflow type than the order saga's current one (the benchmark runs the earlier shape). */
  workflowType?: string;
  /**
   * The saga's workflow task timeout (the server's default, 10 s, when unset). An orderSagaV2 runs
   * its steps in one task: a worker that dies mid-step is noticed after this long, and a cancel or
   * query that comes while the steps run is seen when the SDK heartbeats the task, at 80% of it.
   */
  workflowTaskTimeout?: Duration;
}

/**
 * Starts the saga for an order, or returns the one that already exists: the
 * workflow ID is derived from the order, a running saga is attached to, and a
 * closed one is never started again.
 */
export async function startOrderSaga(
  client: Client,
  input: unknown,
  taskQueue: string,
  opts: StartOptions = {},
): Promise<WorkflowHandle<OrderSagaWorkflow>> {
  const start = orderSagaStart(input, taskQueue, opts);
  try {
    return await client.workflow.start<OrderSagaWorkflow>(start.workflowType, start.options);
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      return client.workflow.getHandle<OrderSagaWorkflow>(start.options.workflowId);
    }
    throw err;
  }
}

/**
 * How an order's saga is started: its workflow type and start options (the deterministic ID, a
 * running saga attached to, a closed one never started again). Throws on an invalid order.
 */
export function orderSagaStart(input: unknown, taskQueue: string, opts: StartOptions = {}) {
  const order = parseOrderInput(input);
  return {
    workflowType: opts.workflowType ?? ORDER_SAGA_WORKFLOW_TYPE,
    options: {
      workflowId: orderWorkflowId(order.orderId),
      taskQueue,
      ...(opts.eager ? { requestEagerStart: true } : {}),
      ...(opts.workflowTaskTimeout !== undefined ? { workflowTaskTimeout: opts.workflowTaskTimeout } : {}),
      args: [order] as [OrderInput],
      workflowIdConflictPolicy: 'USE_EXISTING' as const,
      workflowIdReusePolicy: 'REJECT_DUPLICATE' as const,
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
    },
  };
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

import type { Client } from '@temporalio/client';
import type { OrderRow } from '../orders/repository';
import { statusQuery } from '../../workflows/order-saga';
import { orderWorkflowId } from '../../workflows/order/ids';
import type { OrderSagaResult } from '../../workflows/order/types';
import type { OrderView } from './schemas';

export type SagaView = Omit<OrderView['saga'], 'workflowId'>;

/** The order as the API shows it: the row, and the saga as it is now. */
export function orderView(row: OrderRow, saga: SagaView): OrderView {
  return {
    id: row.id,
    status: row.status,
    customerId: row.customer_id,
    items: row.items,
    amount: { amountMinor: Number(row.amount_minor), currency: row.currency },
    failureReason: row.failure_reason,
    createdAt: new Date(row.created_at).toISOString(),
    saga: { workflowId: orderWorkflowId(row.id), ...saga },
  };
}

export function sagaFromResult(r: OrderSagaResult): SagaView {
  return { status: r.status, completedSteps: r.completedSteps, compensations: r.compensations, failure: r.failure };
}

/** The saga as it is now: its own status query, or the server's word if no worker answers. */
export async function liveSaga(temporal: Client, orderId: string): Promise<SagaView> {
  const handle = temporal.workflow.getHandle(orderWorkflowId(orderId));
  const described = await handle.describe().catch(() => undefined);
  // A query replays a closed workflow's last state, which for a terminated or timed-out
  // saga would still say 'running': the server's status is the truth there.
  if (described && described.status.name !== 'RUNNING' && described.status.name !== 'COMPLETED') {
    return { status: described.status.name.toLowerCase() };
  }
  try {
    const s = await temporal.connection.withDeadline(Date.now() + 3000, () => handle.query(statusQuery));
    return {
      status: s.phase,
      currentStep: s.currentStep,
      completedSteps: s.completedSteps,
      compensations: s.compensations.map(({ step, status, attempts }) => ({ step, status, attempts })),
      failure: s.failure,
    };
  } catch {
    return { status: described ? described.status.name.toLowerCase() : 'unknown' };
  }
}

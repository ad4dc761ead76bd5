import type { Client } from '@temporalio/client';
import { createLedger } from '@sagaflow/toolkit/ledger';
import type { Db } from '../db/pool';
import type { OrderRow } from '../orders/repository';
import { statusQuery } from '../../workflows/order/definitions';
import { orderWorkflowId } from '../../workflows/order/ids';
import type { OrderSagaResult } from '../../workflows/order/types';
import type { OrderView } from './schemas';
import { redactAddresses } from '../redact';

export type SagaView = Omit<OrderView['saga'], 'workflowId'>;

/** What every view of an order shows of its row. */
export function orderFields(row: OrderRow): Omit<OrderView, 'saga'> {
  return {
    id: row.id,
    status: row.status,
    customerId: row.customer_id,
    items: row.items,
    amount: { amountMinor: Number(row.amount_minor), currency: row.currency },
    // Written by the saga without addresses; older rows and other layers' words are cleaned here too.
    failureReason: row.failure_reason === null ? null : redactAddresses(row.failure_reason),
    createdAt: new Date(row.created_at).toISOString(),
  };
}

/** The order as the API shows it: the row, and the saga as it is now. */
export function orderView(row: OrderRow, saga: SagaView): OrderView {
  return { ...orderFields(row), saga: { workflowId: orderWorkflowId(row.id), ...saga } };
}

/** A saga failure as clients see it: its type, and its message without URLs, hosts or ports. */
const publicFailure = (f: { type: string; message: string } | undefined) => (f ? { type: f.type, message: redactAddresses(f.message) } : undefined);

export function sagaFromResult(r: OrderSagaResult): SagaView {
  return { status: r.status, completedSteps: r.completedSteps, compensations: r.compensations, failure: publicFailure(r.failure) };
}

/**
 * The saga as it is now: its own status query, or the server's word if no worker answers.
 * Both calls end by `deadline` (ms since the epoch), answered or not: an answer never waits
 * on a busy server or on workers that do not poll.
 */
export async function liveSaga(temporal: Client, orderId: string, deadline = Date.now() + 3000, db: Db): Promise<SagaView> {
  const handle = temporal.workflow.getHandle(orderWorkflowId(orderId));
  const described = await temporal.withDeadline(deadline, () => handle.describe()).catch(() => undefined);
  // A query replays a closed workflow's last state, which for a terminated or timed-out
  // saga would still say 'running': the server's status is the truth there.
  if (described && described.status.name !== 'RUNNING' && described.status.name !== 'COMPLETED') {
    return { status: described.status.name.toLowerCase() };
  }
  // No workflow task has completed (events: started, task scheduled, task started): no worker has
  // run the saga yet, or one runs its steps in that first task (an orderSagaV2 runs them all in
  // one). Its query would wait for that task to end; the ledger says how far its steps have got.
  if (described?.status.name === 'RUNNING' && described.historyLength < 4) {
    return { status: 'running', compensations: [], ...(await ledgerProgress(db, orderWorkflowId(orderId))) };
  }
  try {
    const s = await temporal.withDeadline(deadline, () => handle.query(statusQuery));
    return {
      status: s.phase,
      currentStep: s.currentStep,
      completedSteps: s.completedSteps,
      compensations: s.compensations.map(({ step, status, attempts }) => ({ step, status, attempts })),
      failure: publicFailure(s.failure),
    };
  } catch {
    return { status: described ? described.status.name.toLowerCase() : 'unknown' };
  }
}

/**
 * A running saga's steps as its ledger rows tell them: those completed, in order, and the one whose
 * call is under way (an external step's row is pending during its call; a local step's row is
 * written with its effect, so it shows once done). Read while the saga's first workflow task runs.
 */
async function ledgerProgress(db: Db, workflowId: string): Promise<{ currentStep: string | null; completedSteps: string[] }> {
  const rows = (await createLedger(db).read(workflowId)).filter((r) => !r.key.endsWith('/undo'));
  return {
    currentStep: rows.find((r) => r.state === 'pending')?.step ?? null,
    completedSteps: rows.filter((r) => r.state === 'completed').map((r) => r.step),
  };
}

/**
 * Checks what each saga says it did against what the ledger recorded, for the
 * soak. The books audit (src/orders/audit.ts) checks money and stock from the
 * rows alone; this checks the saga's own account against them, which is where a
 * retried workflow task that decided differently from the task it replaced shows:
 *
 * - the steps the result lists as done ↔ the forward rows that completed (a
 *   tombstone that replaced a completed row counts: the step was done, then undone;
 *   a step completed after the saga stopped waiting for it must be compensated);
 * - the compensations it lists as done ↔ the undo rows that completed;
 * - the order's failure reason ↔ the first business failure the ledger recorded
 *   (when the saga compensated for one), and the result's failure ↔ the same,
 *   unless the saga stopped waiting for the step first (its last attempt timed
 *   out, or its transient failures ran out of retries, while the step's answer
 *   was lost): the saga cannot know that answer, the order still must;
 * - the order's status ↔ the saga's outcome.
 */

import { storableText } from '@sagaflow/toolkit/ledger';

/** A saga's result as the order saga returns it (workflows/order/types.ts). */
export interface SagaAccount {
  status: string;
  failure?: { type: string; message: string };
  completedSteps: string[];
  compensations: { step: string; status: string }[];
}

/** One ledger row of the saga, in the order its rows were created. */
export interface LedgerRowForAudit {
  key: string;
  step: string;
  state: string;
  undone: string | null;
  error: { type: string; message: string } | null;
}

export interface OrderForAudit {
  id: string;
  status: string;
  failure_reason: string | null;
}

/**
 * Failures that say the saga stopped waiting for a step rather than what the step decided: a timeout
 * (described as Unknown: it carries no type) or a provider unreachable through every attempt.
 */
const STOPPED_WAITING = new Set(['Unknown', 'ProviderUnavailable']);

const ORDER_STATUS: Record<string, string> = { completed: 'completed', compensated: 'failed', cancelled: 'cancelled' };

/** Every disagreement between the saga's account, its order row and its ledger rows, one line each. */
export function checkSagaAgainstLedger(order: OrderForAudit, account: SagaAccount, rows: LedgerRowForAudit[]): string[] {
  const problems: string[] = [];
  const add = (p: string) => problems.push(`${order.id}: ${p}`);
  const forward = rows.filter((r) => !r.key.endsWith('/undo'));
  const undos = rows.filter((r) => r.key.endsWith('/undo'));
  const wasDone = (r: LedgerRowForAudit) => r.state === 'completed' || (r.state === 'cancelled' && r.undone === 'completed');

  const listed = new Set(account.completedSteps);
  const done = new Set(forward.filter(wasDone).map((r) => r.step));
  const compensated = new Set(account.compensations.filter((c) => c.status === 'done').map((c) => c.step));
  for (const s of listed) if (!done.has(s)) add(`the saga lists ${s} as done, but the ledger has no completed ${s}`);
  // A step the saga stopped waiting for (a cancel while it was in flight) may have completed anyway;
  // its undo was registered before the call, so it must be listed as compensated instead.
  for (const s of done) {
    if (!listed.has(s) && !compensated.has(s)) add(`the ledger has ${s} completed, but the saga lists it neither as done nor as compensated`);
  }

  const undone = new Set(undos.filter((r) => r.state === 'completed').map((r) => r.step));
  for (const s of compensated) if (!undone.has(s)) add(`the saga lists ${s} as compensated, but its undo row is not completed`);
  for (const s of undone) if (!compensated.has(s)) add(`the ledger has ${s}'s undo completed, but the saga does not list it`);

  const want = ORDER_STATUS[account.status];
  if (want && order.status !== want) add(`the saga ended ${account.status}, but the order is ${order.status}`);

  if (account.status === 'compensated') {
    const first = forward.find((r) => r.state === 'failed' || (r.state === 'cancelled' && r.undone === 'failed'));
    if (first?.error) {
      const reason = `${first.error.type}: ${first.error.message}`;
      const sameFailure = account.failure?.type === first.error.type && account.failure.message === first.error.message;
      if (!sameFailure && !STOPPED_WAITING.has(account.failure?.type ?? '')) {
        add(`the saga compensated for ${account.failure?.type ?? 'nothing'}, but the first failure recorded is ${reason}`);
      }
      // The reason is stored as storable text (NUL bytes and lone surrogates replaced), so compare what survives that.
      if (order.failure_reason !== storableText(reason)) {
        add(`the order's reason is "${order.failure_reason}", but the first failure recorded is ${reason}`);
      }
    }
  }
  return problems;
}


import type { Client } from '@temporalio/client';
import { inTransaction, type Db } from '../db/pool';
import { lockAbandonedOrders, toOrderInput } from './repository';
import { startOrderSaga } from './start';

export interface RecoveryOptions {
  db: Db;
  temporal: Client;
  taskQueue: string;
  /** An order younger than this may still have its request at work: leave it alone. */
  olderThanMs: number;
  /** At most this many orders per round. */
  limit?: number;
  searchAttributes?: boolean;
  /** The workflow type sagas start as (SAGAFLOW_ORDER_SAGA_TYPE); the order saga's current one when unset. */
  workflowType?: string;
}

/**
 * Starts the saga of every order whose request died between committing the
 * order and starting its saga (a crashed API, Temporal unreachable, a client
 * that never retried). The rows are locked with SKIP LOCKED and the start is
 * idempotent by workflow ID, so any number of recoverers, and a client's own
 * retry, can run at once. Returns the IDs it recovered.
 */
export async function recoverAbandonedOrders(opts: RecoveryOptions): Promise<string[]> {
  return inTransaction(opts.db, async (tx) => {
    const rows = await lockAbandonedOrders(tx, opts.olderThanMs, opts.limit ?? 100);
    for (const row of rows) {
      await startOrderSaga(opts.temporal, toOrderInput(row), opts.taskQueue, { searchAttributes: opts.searchAttributes, workflowType: opts.workflowType });
      await tx.query(`UPDATE orders SET saga_started_at = now() WHERE id = $1`, [row.id]);
    }
    return rows.map((r) => r.id);
  });
}

/**
 * Runs recoverAbandonedOrders every `intervalMs`, one round at a time (a round still running
 * when the next is due is not started twice). The API and the intake each run one.
 */
export function startRecoveryLoop(
  opts: RecoveryOptions & { intervalMs: number; onRecovered(ids: string[]): void; onError(err: Error): void },
): { stop(): void } {
  let recovering = false;
  const timer = setInterval(() => {
    if (recovering) return;
    recovering = true;
    recoverAbandonedOrders(opts)
      .then((ids) => ids.length > 0 && opts.onRecovered(ids), opts.onError)
      .finally(() => (recovering = false));
  }, opts.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

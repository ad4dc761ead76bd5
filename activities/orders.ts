import { ApplicationFailure } from '@temporalio/common';
import type { Tx } from '../src/db/pool';
import { insertOrder, orderMatches } from '../src/orders/repository';
import { resolveCompensationFailures } from '../src/orders/compensation-failures';
import { redactAddresses } from '../src/redact';
import { storableText } from '@sagaflow/toolkit/ledger';
import { FailureType } from '../workflows/order/failures';
import { parseStepKey } from '@sagaflow/toolkit/workflow';
import { Step } from '../workflows/order/steps';
import type { OrderInput, StepInput, UndoInput } from '../workflows/order/types';
import type { Ledger } from '@sagaflow/toolkit/ledger';
import type { ActivityDeps } from './deps';

/** The first business failure a forward step of the saga recorded (also under its tombstone), if any. */
async function firstRecordedFailure(tx: Tx, workflowId: string): Promise<{ type: string; message: string } | null> {
  const res = await tx.query<{ error: { type: string; message: string } }>(
    `SELECT error FROM step_ledger
      WHERE workflow_id = $1 AND key NOT LIKE '%/undo' AND error IS NOT NULL
        AND (state = 'failed' OR (state = 'cancelled' AND undone = 'failed'))
      ORDER BY created_at, key LIMIT 1`,
    [workflowId],
  );
  const error = res.rows[0]?.error;
  return error && typeof error.type === 'string' && typeof error.message === 'string' ? error : null;
}

export function createOrderActivities(deps: Pick<ActivityDeps, 'db'>, ledger: Ledger) {
  const record = ledger.step(Step.recordOrder);
  const complete = ledger.step(Step.completeOrder);
  return {
    async recordOrder(input: { key: string; order: OrderInput }): Promise<{ orderId: string }> {
      const { order } = input;
      return record.local(input.key, order, async (tx) => {
        // The API writes the order row with its idempotency key; then this step only confirms it.
        const owner = { workflowId: parseStepKey(input.key).workflowId, sagaStarted: true };
        if (!(await insertOrder(tx, order, owner)) && !(await orderMatches(tx, order))) {
          throw ApplicationFailure.nonRetryable(
            `order ${order.orderId} already exists with other contents`,
            FailureType.InvalidInput,
          );
        }
        return { orderId: order.orderId };
      });
    },

    /**
     * Closes the order as `cancelled` or `failed`, with the reason, both from the saga's cause.
     * Undos scheduled before the cause was added carry `status` and `reason` themselves.
     *
     * A failed order's reason is the first business failure the ledger recorded for the saga, when
     * there is one: the saga may have stopped waiting for a step (its last attempt timed out, its
     * answer lost on the way) after the step had recorded why it failed, a declined card say.
     */
    async cancelOrder(input: UndoInput & { status?: 'cancelled' | 'failed'; reason?: string }): Promise<{ changed: boolean }> {
      const { cause } = input;
      const status = cause ? (cause.cancelled ? 'cancelled' : 'failed') : (input.status ?? 'failed');
      const given = cause ? `${cause.failure.type}: ${cause.failure.message}` : (input.reason ?? '');
      return record.localUndo(input.key, input, async (tx, { key }) => {
        const workflowId = parseStepKey(key).workflowId;
        const recorded = status === 'failed' ? await firstRecordedFailure(tx, workflowId) : null;
        // Clients read the reason (the API, webhooks): whatever a lower layer wrote, no address of ours.
        const reason = redactAddresses(recorded ? `${recorded.type}: ${recorded.message}` : given);
        // The row may have been written by the API before this saga's record step ever ran (a cancel
        // can arrive first), so ownership is the row's own word, not the forward step's ledger entry:
        // an order another saga wrote is never closed by this one.
        const res = await tx.query(
          `UPDATE orders SET status = $2, failure_reason = $3, updated_at = now()
            WHERE id = $1 AND status = 'pending' AND workflow_id = $4`,
          [input.orderId, status, storableText(reason), workflowId],
        );
        return { changed: res.rowCount === 1 };
      });
    },

    /**
     * Writes on the order that the compensation under `key` failed for good (the saga's
     * onCompensationFailed), once per step: the write is its own record, conditional on the step
     * not being there yet, so a retried attempt or a workflow task run again adds nothing, whatever
     * message it carries. The outbox's trigger turns it into a `compensation_failed` event, and the
     * order then closes as `failed`. An order another saga wrote is left alone.
     */
    async recordCompensationFailure(input: StepInput & { failure: { type: string; message: string } }): Promise<{ recorded: boolean }> {
      const { workflowId, step, undo } = parseStepKey(input.key);
      if (!undo) throw ApplicationFailure.nonRetryable(`${input.key} is not a compensation's key`, FailureType.InvalidInput);
      const entry = { step, type: storableText(input.failure.type), message: storableText(redactAddresses(input.failure.message)) };
      const res = await deps.db.query(
        `UPDATE orders
            SET compensation_failures = coalesce(compensation_failures, '[]'::jsonb) || jsonb_build_array($3::jsonb || jsonb_build_object('at', now())),
                updated_at = now()
          WHERE id = $1 AND workflow_id = $2
            AND NOT coalesce(compensation_failures, '[]'::jsonb) @> jsonb_build_array(jsonb_build_object('step', $4::text))`,
        [input.orderId, workflowId, JSON.stringify(entry), step],
      );
      return { recorded: res.rowCount === 1 };
    },

    /**
     * Writes on the order that the compensation under `key` is settled: retried by an operator and
     * done (`retried`), or settled by hand (`manual`): its entry in the order's compensation
     * failures gains the resolution, once (a repeated call changes nothing), and the outbox writes
     * a `compensation_resolved` event.
     */
    async recordCompensationResolved(
      input: StepInput & { how: 'retried' | 'manual'; by: string; note?: string },
    ): Promise<{ resolved: boolean }> {
      const { workflowId, step, undo } = parseStepKey(input.key);
      if (!undo) throw ApplicationFailure.nonRetryable(`${input.key} is not a compensation's key`, FailureType.InvalidInput);
      const resolution = { how: input.how, by: input.by, ...(input.note !== undefined ? { note: input.note } : {}) };
      let resolved: string[];
      try {
        resolved = await resolveCompensationFailures(deps.db, { orderId: input.orderId, workflowId }, resolution, [step]);
      } catch (err) {
        if (err instanceof RangeError) throw ApplicationFailure.nonRetryable(err.message, FailureType.InvalidInput);
        throw err;
      }
      return { resolved: resolved.length > 0 };
    },

    /** The last, retriable step: the order is done and its held stock leaves the shelf. */
    async completeOrder(input: StepInput): Promise<{ completed: true }> {
      // Data-modifying CTEs always run, referenced or not: one statement for all three tables, sent
      // with the step's record (BEGIN, it, the record, COMMIT: one round trip).
      return complete.localStatement(input.key, input, () => ({
        statement: {
          text: `WITH consumed AS (
             UPDATE reservations SET status = 'consumed', updated_at = now()
              WHERE order_id = $1 AND status = 'held' RETURNING sku, quantity),
           stock AS (
             UPDATE inventory i SET on_hand = i.on_hand - c.quantity, reserved = i.reserved - c.quantity
               FROM consumed c WHERE i.sku = c.sku RETURNING i.sku)
           UPDATE orders SET status = 'completed', updated_at = now()
            WHERE id = $1 AND status = 'pending'`,
          values: [input.orderId],
        },
        result: { completed: true as const },
      }));
    },
  };
}

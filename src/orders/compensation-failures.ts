import { inTransaction, storableText, type Db } from '@sagaflow/toolkit/ledger';
import { redactAddresses } from '../redact';

/** How a compensation that failed for good was settled: retried by an operator and done, or by hand. */
export interface CompensationResolution {
  how: 'retried' | 'manual';
  /** Who: `cli:ada`, `admin:ops-team`. */
  by: string;
  note?: string;
}

/** One entry of orders.compensation_failures, as the saga wrote it and an operator resolved it. */
export interface CompensationFailureEntry {
  step: string;
  type: string;
  message: string;
  at: string;
  resolution?: CompensationResolution & { at: string };
}

export const MAX_ACTOR = 200;
export const MAX_NOTE = 2000;

/** A resolution as it may be stored: refused (RangeError, naming the field) if `by` is empty or either is too long. */
export function checkedResolution(r: CompensationResolution): CompensationResolution {
  const by = r.by.trim();
  if (!by || by.length > MAX_ACTOR) throw new RangeError(`by: 1 to ${MAX_ACTOR} characters naming who acts`);
  if (r.note !== undefined && r.note.length > MAX_NOTE) throw new RangeError(`note: at most ${MAX_NOTE} characters`);
  return { how: r.how, by: storableText(by), ...(r.note !== undefined ? { note: storableText(redactAddresses(r.note)) } : {}) };
}

/**
 * Writes `resolution` into the order's compensation failures for `steps` (every unresolved one when
 * undefined) that have none yet, in one transaction; returns the steps it resolved. A step already
 * resolved keeps its first resolution, so a repeated call (a retried activity, an operator asking
 * twice) changes nothing. The outbox's trigger writes one `compensation_resolved` event per entry.
 * An order another saga wrote is left alone.
 */
export async function resolveCompensationFailures(
  db: Db,
  order: { orderId: string; workflowId: string },
  resolution: CompensationResolution,
  steps?: string[],
): Promise<string[]> {
  const r = checkedResolution(resolution);
  return inTransaction(db, async (tx) => {
    const res = await tx.query<{ compensation_failures: CompensationFailureEntry[] | null }>(
      'SELECT compensation_failures FROM orders WHERE id = $1 AND workflow_id = $2 FOR UPDATE',
      [order.orderId, order.workflowId],
    );
    const entries = res.rows[0]?.compensation_failures;
    if (!entries) return [];
    const at = new Date().toISOString();
    const resolved: string[] = [];
    const next = entries.map((e) => {
      if (e.resolution || (steps && !steps.includes(e.step))) return e;
      resolved.push(e.step);
      return { ...e, resolution: { ...r, at } };
    });
    if (resolved.length === 0) return [];
    await tx.query('UPDATE orders SET compensation_failures = $3::jsonb, updated_at = now() WHERE id = $1 AND workflow_id = $2', [
      order.orderId,
      order.workflowId,
      JSON.stringify(next),
    ]);
    return resolved;
  });
}

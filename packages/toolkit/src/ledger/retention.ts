import type { Db } from '../db';

export interface LedgerRetention {
  /**
   * How long a saga's rows are kept after its last row was written (a step or
   * compensation started). It must outlast
   * the longest a saga can live (a saga idle past it would find its forward
   * records gone when it compensates), the Temporal namespace's retention and
   * every activity's schedule-to-close: a late attempt must always still find
   * its tombstone.
   */
  retentionMs: number;
  /** Sagas per batch: each batch is one short statement, so the hot path never waits long on it. */
  batchSize?: number;
  /** Batches per call, at most. */
  maxBatches?: number;
}

/**
 * Deletes the rows of sagas with no row written since now − retention, a batch
 * of sagas at a time. A step's row changes only while its step runs (seconds to
 * minutes), and every step and compensation writes a row of its own, so the
 * newest created_at is the saga's last activity. Returns how many rows went.
 */
export async function purgeLedger(db: Db, opts: LedgerRetention): Promise<{ rows: number; sagas: number }> {
  const batchSize = opts.batchSize ?? 500;
  let rows = 0;
  let sagas = 0;
  for (let batch = 0; batch < (opts.maxBatches ?? 20); batch++) {
    const res = await db.query<{ sagas: number; rows: number }>(
      `WITH cutoff AS (SELECT now() - make_interval(secs => $1::double precision / 1000) AS at),
       -- Sagas with an old row and no recent one: closed (or idle) for longer than the retention.
       closed AS (
         SELECT DISTINCT l.workflow_id FROM step_ledger l, cutoff
          WHERE l.created_at < cutoff.at
            AND NOT EXISTS (SELECT 1 FROM step_ledger n WHERE n.workflow_id = l.workflow_id AND n.created_at >= cutoff.at)
          LIMIT $2),
       gone AS (
         DELETE FROM step_ledger l USING closed c WHERE l.workflow_id = c.workflow_id RETURNING l.workflow_id)
       SELECT count(DISTINCT workflow_id)::int AS sagas, count(*)::int AS rows FROM gone`,
      [opts.retentionMs, batchSize],
    );
    const r = res.rows[0] ?? { sagas: 0, rows: 0 };
    rows += r.rows;
    sagas += r.sagas;
    if (r.sagas < batchSize) break;
  }
  return { rows, sagas };
}

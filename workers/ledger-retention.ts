import type { Db } from '../src/db/pool';
import { purgeLedger } from '@sagaflow/toolkit/ledger';
import type { SagaMetrics } from '../src/observability/metrics';

/**
 * Purges the ledger rows of long-idle sagas every `intervalMs`, in short
 * batches off the hot path. Any number of workers may run it: a row is deleted
 * once, by whichever gets there first. Returns a stop function.
 */
export function startLedgerRetention(opts: {
  db: Db;
  retentionMs: number;
  intervalMs: number;
  metrics?: SagaMetrics;
  log: (line: Record<string, unknown>) => void;
}): () => void {
  if (opts.intervalMs <= 0) return () => undefined;
  let running = false;
  const round = () => {
    if (running) return;
    running = true;
    purgeLedger(opts.db, { retentionMs: opts.retentionMs })
      .then(
        ({ rows, sagas }) => {
          opts.metrics?.ledgerRowsPurged.inc(rows);
          if (rows > 0) opts.log({ msg: 'ledger rows purged', rows, sagas, retentionDays: opts.retentionMs / 86_400_000 });
        },
        (err: Error) => opts.log({ msg: 'ledger purge failed; retrying next round', error: err.message }),
      )
      .finally(() => (running = false));
  };
  const timer = setInterval(round, opts.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

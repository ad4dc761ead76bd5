import { randomBytes } from 'node:crypto';
import type { Db } from '../../src/db/pool';
import { createLedger } from '@sagaflow/toolkit/ledger';
import { percentile } from './run';

export interface GrowthPoint {
  ledgerRows: number;
  steps: number;
  p50Ms: number;
  p95Ms: number;
  /** p50 over the p50 at the smallest size. */
  vsSmallest: number;
}

/**
 * Step latency as step_ledger grows: at each size (rows of finished sagas,
 * written in bulk), times `steps` first executions of a local step and of its
 * duplicate through the real ledger. A ledger whose cost grows with its size
 * shows here first.
 */
export async function ledgerGrowth(db: Db, sizes: number[], steps: number, log: (m: string) => void): Promise<GrowthPoint[]> {
  const run = randomBytes(3).toString('hex');
  const ledger = createLedger(db).step('bench-step');
  const points: GrowthPoint[] = [];
  const stepAndDuplicate = async (key: string, i: number) => {
    await ledger.local(key, { i }, async (tx) => (await tx.query('SELECT 1 AS one')).rows[0]);
    await ledger.local(key, { i }, async () => ({ one: 1 }));
  };
  // Warm up connections, the JIT and PostgreSQL's caches on both paths first: the smallest size must not pay for them.
  for (let i = 0; i < Math.max(steps, 300); i++) await stepAndDuplicate(`bench-${run}-warm-${i}/bench-step`, i);
  let filled = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM step_ledger')).rows[0]!.n);
  for (const size of sizes) {
    if (filled < size) {
      // Six rows per finished saga, as the order saga leaves them.
      await db.query(
        `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state, result)
         SELECT 'growth-${run}-' || (i / 6) || '/step-' || (i % 6), 'growth-${run}-' || (i / 6), 'step-' || (i % 6),
                md5(i::text), 'completed', '{"ok":true}'::jsonb
           FROM generate_series($1::bigint, $2::bigint - 1) AS i`,
        [filled, size],
      );
      await db.query('ANALYZE step_ledger');
      filled = size;
    }
    const times: number[] = [];
    for (let i = 0; i < steps; i++) {
      const key = `bench-${run}-${size}-${i}/bench-step`;
      const t0 = performance.now();
      await stepAndDuplicate(key, i);
      times.push(performance.now() - t0);
    }
    const p50 = percentile(times, 50);
    const rows = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM step_ledger')).rows[0]!.n);
    points.push({ ledgerRows: rows, steps, p50Ms: p50, p95Ms: percentile(times, 95), vsSmallest: points.length ? p50 / points[0]!.p50Ms : 1 });
    log(`ledger at ${size} rows: step + duplicate p50 ${p50.toFixed(2)} ms`);
  }
  return points;
}

export function formatGrowth(points: GrowthPoint[]): string {
  return [
    '| step_ledger rows | step + duplicate p50 ms | p95 ms | p50 / smallest |',
    '|---|---|---|---|',
    ...points.map((p) => `| ${p.ledgerRows.toLocaleString('en')} | ${p.p50Ms.toFixed(2)} | ${p.p95Ms.toFixed(2)} | ${p.vsSmallest.toFixed(2)} |`),
  ].join('\n');
}

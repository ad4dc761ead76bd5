/**
 * Ledger retention: the rows of sagas idle for longer than the retention are
 * purged in batches, by the worker processes; the rows of any saga with a
 * recent row stay, whatever their age. Real PostgreSQL, a real worker process.
 */
import { purgeLedger } from '../../packages/toolkit/src/ledger/retention';
import { createTestSchema, databaseUrl, uniqueId } from '../helpers/context';
import { spawnWorker, urlWithSchema } from '../helpers/worker-process';
import type { Db } from '../../src/db/pool';

let db: Db;
let schema: string;
let drop: () => Promise<void>;
const DAY = 86_400_000;

beforeAll(async () => {
  ({ db, schema, drop } = await createTestSchema('retention'));
});
afterAll(async () => {
  await drop?.();
});

/** A saga's rows, each last changed `ageDays[i]` days ago. */
async function saga(ageDays: number[]): Promise<string> {
  const wf = uniqueId('order');
  for (const [i, age] of ageDays.entries()) {
    await db.query(
      `INSERT INTO step_ledger (key, workflow_id, step, state, updated_at, created_at)
       VALUES ($1, $2, $3, 'completed', now() - make_interval(days => $4), now() - make_interval(days => $4))`,
      [`${wf}/step-${i}`, wf, `step-${i}`, age],
    );
  }
  return wf;
}

const rowsOf = async (wf: string) =>
  (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM step_ledger WHERE workflow_id = $1`, [wf])).rows[0]!.n;

test('sagas idle past the retention go whole; a saga with one recent row stays whole, however old its others', async () => {
  const idle = await saga([45, 41, 40]);
  const stillMoving = await saga([60, 50, 1]);
  const recent = await saga([2, 1]);
  const purged = await purgeLedger(db, { retentionMs: 30 * DAY });
  expect(purged).toEqual({ sagas: 1, rows: 3 });
  expect([await rowsOf(idle), await rowsOf(stillMoving), await rowsOf(recent)]).toEqual([0, 3, 2]);
});

test('a backlog goes in batches, all of it', async () => {
  const old = await Promise.all(Array.from({ length: 7 }, () => saga([40, 40])));
  const purged = await purgeLedger(db, { retentionMs: 30 * DAY, batchSize: 2, maxBatches: 10 });
  expect(purged).toEqual({ sagas: 7, rows: 14 });
  for (const wf of old) expect(await rowsOf(wf)).toBe(0);
  expect(await purgeLedger(db, { retentionMs: 30 * DAY })).toEqual({ sagas: 0, rows: 0 });
});

test('a worker process purges on its own and counts what it purged', async () => {
  const idle = await saga([40, 40, 40]);
  const w = spawnWorker({
    DATABASE_URL: urlWithSchema(databaseUrl(), schema),
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS!,
    PAYMENT_PROVIDER_URL: 'http://127.0.0.1:9',
    CARRIER_URL: 'http://127.0.0.1:9',
    TEMPORAL_TASK_QUEUE: uniqueId('retention'),
    LEDGER_RETENTION_DAYS: '30',
    LEDGER_PURGE_INTERVAL_MINUTES: '0.01',
  });
  try {
    await w.ready;
    for (let i = 0; i < 100 && (await rowsOf(idle)) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await rowsOf(idle)).toBe(0);
    const metrics = await (await fetch(w.metricsUrl()!)).text();
    expect(metrics).toMatch(/^sagaflow_ledger_rows_purged_total [1-9]/m);
  } finally {
    w.child.kill('SIGKILL');
    await w.exited;
  }
});

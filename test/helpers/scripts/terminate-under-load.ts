/**
 * Run as its own process by test/integration/db-faults.test.ts: a small pool
 * kept busy (plain pool queries and transactions, more of them than
 * connections, so released clients go straight to waiters) while an
 * administrator terminates its connections over and over. The process must
 * live through it. Prints one JSON line: how many statements succeeded, and
 * every distinct way one failed.
 */
import { Client } from 'pg';
import { createPool, inTransaction, isConnectionError } from '../../../src/db/pool';

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL!;
  const durationMs = Number(process.env.LOAD_MS ?? 5000);
  // Only this pool's connections are terminated: other test files share the database.
  const name = `terminate-under-load-${process.pid}`;
  const u = new URL(url);
  u.searchParams.set('application_name', name);
  const db = createPool({ connectionString: u.toString(), max: 2 });
  const admin = new Client({ connectionString: url });
  await admin.connect();
  let stop = false;
  let terminated = 0;
  const terminator = (async () => {
    while (!stop) {
      const res = await admin.query<{ n: number }>(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1`,
        [name],
      );
      terminated += res.rows[0]!.n;
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 30));
    }
  })();
  let succeeded = 0;
  const failures = new Set<string>();
  const note = (err: unknown) => {
    const e = err as { code?: string; message: string };
    failures.add(`${isConnectionError(err) ? 'connection' : 'OTHER'}: ${e.code ?? ''} ${e.message}`);
  };
  const load = Array.from({ length: 8 }, async (_, i) => {
    while (!stop) {
      const work = i % 2 === 0 ? db.query('SELECT 1') : inTransaction(db, (tx) => tx.query('SELECT 1'));
      await work.then(() => succeeded++, note);
    }
  });
  await new Promise((r) => setTimeout(r, durationMs));
  stop = true;
  await Promise.all([...load, terminator]);
  await admin.end();
  await db.end();
  process.stdout.write(`${JSON.stringify({ succeeded, terminated, failures: [...failures].sort() })}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

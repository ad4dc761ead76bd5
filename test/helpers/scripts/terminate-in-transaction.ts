/**
 * Run as its own process by test/integration/db-faults.test.ts: a transaction
 * whose connection the server terminates must fail, not end the process, and
 * the pool must serve the next query on a fresh connection. Prints one JSON line.
 */
import { Client } from 'pg';
import { createPool, inTransaction, withClient } from '../../../src/db/pool';

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL!;
  const db = createPool({ connectionString: url, max: 2 });
  const admin = new Client({ connectionString: url });
  await admin.connect();
  const terminate = (pid: number) => admin.query('SELECT pg_terminate_backend($1)', [pid]);
  const outcome = async (p: Promise<unknown>) =>
    p.then(
      () => 'committed',
      (e: { code?: string; message: string }) => `failed: ${e.code ?? ''} ${e.message}`,
    );

  // Terminated between two statements of a transaction.
  const between = await outcome(
    inTransaction(db, async (tx) => {
      const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await terminate(pid);
      await new Promise((r) => setTimeout(r, 200));
      await tx.query('SELECT 1');
    }),
  );
  // Terminated while a statement runs.
  const during = await outcome(
    inTransaction(db, async (tx) => {
      const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      setTimeout(() => void terminate(pid), 200);
      await tx.query('SELECT pg_sleep(5)');
    }),
  );
  // A plain checked-out client, terminated while idle in our hands.
  const idle = await outcome(
    withClient(db, async (c) => {
      const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await terminate(pid);
      await new Promise((r) => setTimeout(r, 200));
    }),
  );
  const after = (await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one;
  await admin.end();
  await db.end();
  process.stdout.write(`${JSON.stringify({ between, during, idle, after })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`main failed: ${String(err)}\n`);
  process.exit(3);
});

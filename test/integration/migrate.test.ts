/**
 * Migrations when processes start together (an API, a worker and the services on a
 * new database): each waits for the one migrating, none fails, every file is
 * applied once. Real PostgreSQL; asserted from the migrations table and the schema.
 */
import { Client } from 'pg';
import { migrate, MIGRATION_LOCK_ID } from '../../src/db/migrate';
import { quoteIdent } from '../../src/db/pool';
import { databaseUrl, uniqueId } from '../helpers/context';

const schemas: string[] = [];
let admin: Client;

beforeAll(async () => {
  admin = new Client({ connectionString: databaseUrl() });
  await admin.connect();
});

afterAll(async () => {
  for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${quoteIdent(s)} CASCADE`);
  await admin.end();
});

const fresh = () => {
  const s = uniqueId('migrate').replace(/-/g, '_');
  schemas.push(s);
  return s;
};

const appliedFiles = async (schema: string) =>
  (await admin.query<{ name: string; n: number }>(`SELECT name, count(*)::int AS n FROM ${quoteIdent(schema)}.sagaflow_migrations GROUP BY name ORDER BY name`)).rows;

test('a migration started while another process holds the lock waits for it, then finds its work done', async () => {
  const schema = fresh();
  const holder = new Client({ connectionString: databaseUrl() });
  await holder.connect();
  try {
    await holder.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK_ID})`);
    let settled = false;
    const waiting = migrate(databaseUrl(), schema).finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 1000));
    // Still waiting, not failed with "Another migration is already running".
    expect(settled).toBe(false);
    await holder.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_ID})`);
    const applied = await waiting;
    expect(applied.length).toBeGreaterThan(0);
    expect((await appliedFiles(schema)).map((r) => r.name)).toEqual([...applied].sort());
  } finally {
    await holder.end();
  }
});

test('five processes migrating one new schema at once: none fails, each file is applied once', async () => {
  const schema = fresh();
  const runs = await Promise.allSettled(Array.from({ length: 5 }, () => migrate(databaseUrl(), schema)));
  expect(runs.map((r) => (r.status === 'rejected' ? String(r.reason) : r.status))).toEqual(Array(5).fill('fulfilled'));
  const applied = runs.map((r) => (r as PromiseFulfilledResult<string[]>).value);
  // One run applied every file; the others found nothing left to do.
  expect(applied.filter((a) => a.length > 0)).toHaveLength(1);
  const rows = await appliedFiles(schema);
  expect(rows.every((r) => r.n === 1)).toBe(true);
  expect(rows.map((r) => r.name)).toEqual([...applied.find((a) => a.length > 0)!].sort());
  const { rows: tables } = await admin.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1 AND tablename = 'step_ledger'`, [schema]);
  expect(tables[0].n).toBe(1);
});

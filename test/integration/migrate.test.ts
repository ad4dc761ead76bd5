/**
 * Migrations when processes start together (an API, a worker and the services on a
 * new database): each waits for the one migrating, none fails, every file is
 * applied once. Real PostgreSQL; asserted from the migrations table and the schema.
 */
import { Client } from 'pg';
import { StartupError } from '../../src/config';
import { migrate, migratePatiently, MIGRATION_LOCK_ID } from '../../src/db/migrate';
import { freePort } from '../../src/ports';
import { quoteIdent } from '../../src/db/pool';
import { databaseUrl, uniqueId } from '../helpers/context';
import { spawnNode } from '../helpers/worker-process';

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

/** What migrate() applied of the service's own files (the toolkit modules' versions are `module/version_name`). */
const serviceFiles = (applied: string[]) => applied.filter((name) => !name.includes('/'));

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
    expect((await appliedFiles(schema)).map((r) => r.name)).toEqual(serviceFiles(applied).sort());
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
  expect(rows.map((r) => r.name)).toEqual(serviceFiles(applied.find((a) => a.length > 0)!).sort());
  const { rows: tables } = await admin.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1 AND tablename = 'step_ledger'`, [schema]);
  expect(tables[0].n).toBe(1);
});

/** The test database's URL with its own application_name, so only its connections are terminated. */
const namedUrl = (name: string) => {
  const u = new URL(databaseUrl());
  u.searchParams.set('application_name', name);
  return u.toString();
};

/** Backends already terminated by this file: a terminated backend can still show in pg_stat_activity, waiting, for a moment. */
const terminated = new Set<number>();

/**
 * Terminates the connections of `name` that wait for the migration lock and were not terminated before;
 * resolves with how many were terminated.
 */
async function terminateWaiting(name: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const res = await admin.query<{ pid: number; done: boolean }>(
      `SELECT pid, pg_terminate_backend(pid) AS done FROM pg_stat_activity
        WHERE application_name = $1 AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_lock%'
          AND NOT (pid = ANY($2::int[]))`,
      [name, [...terminated]],
    );
    const done = res.rows.filter((r) => r.done);
    for (const r of done) terminated.add(r.pid);
    if (done.length) return done.length;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no connection of ${name} waited for the migration lock`);
}

describe('a terminated connection at start-up is waited out, not fatal', () => {
  test('a migration whose connection is terminated while it waits is tried again, and applies every file once', async () => {
    const schema = fresh();
    const name = uniqueId('migrate-term');
    const holder = new Client({ connectionString: databaseUrl() });
    await holder.connect();
    const lines: Record<string, unknown>[] = [];
    try {
      await holder.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK_ID})`);
      const run = migratePatiently(namedUrl(name), { schema, log: (l) => lines.push(l) });
      expect(await terminateWaiting(name)).toBe(1);
      // It connects again and waits for the lock again, rather than failing.
      await terminateWaiting(name);
      await holder.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_ID})`);
      const applied = await run;
      expect(applied.length).toBeGreaterThan(0);
      expect((await appliedFiles(schema)).every((r) => r.n === 1)).toBe(true);
      expect(lines.map((l) => l.msg)).toEqual(['migrations: database connection failed; retrying', 'migrations: database connection failed; retrying']);
    } finally {
      await holder.end();
    }
  });

  test('a database that stays unreachable ends in a StartupError that says what and for how long', async () => {
    const port = await freePort();
    const err = await migratePatiently(`postgresql://postgres@127.0.0.1:${port}/none`, { withinMs: 1200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StartupError);
    expect((err as Error).message).toMatch(/^migrations: PostgreSQL could not be reached for \d+ s \(\d+ attempts\); last error: .*ECONNREFUSED/);
  });

  test('the services process outlives its start-up migration connection being terminated, then serves', async () => {
    const name = uniqueId('services-term');
    const holder = new Client({ connectionString: databaseUrl() });
    await holder.connect();
    await holder.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK_ID})`);
    const services = spawnNode('bin/services.ts', { DATABASE_URL: namedUrl(name), PAYMENT_PROVIDER_PORT: '0', CARRIER_PORT: '0' }, 'services listening');
    try {
      await terminateWaiting(name);
      await holder.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_ID})`);
      await services.ready;
      expect(services.child.exitCode).toBeNull();
      expect(services.output()).toContain('migrations: database connection failed; retrying');
      const provider = /"paymentProvider":"([^"]+)"/.exec(services.output())![1]!;
      expect((await fetch(`${provider}/charges/none`)).status).toBe(404);
    } finally {
      await holder.end();
      services.child.kill('SIGTERM');
      await services.exited;
    }
  });
});

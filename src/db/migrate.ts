import path from 'node:path';
import type { Client } from 'pg';
import { runner } from 'node-pg-migrate';
import { ExitCode, StartupError } from '../config';
import { EDGE_SCHEMA } from '@sagaflow/toolkit/edge';
import { INBOX_SCHEMA } from '@sagaflow/toolkit/inbox';
import { LEDGER_SCHEMA } from '@sagaflow/toolkit/ledger';
import { createClient, isConnectionError, quoteIdent } from './pool';
import { applySchema, type ModuleSchema } from '@sagaflow/toolkit/ledger';

export const MIGRATIONS_DIR = path.join(__dirname, 'migrations');

/** node-pg-migrate's advisory lock (its runner's PG_MIGRATE_LOCK_ID, not exported). */
export const MIGRATION_LOCK_ID = '7241865325823964';
/** The migration connection's application_name, so an operator (or a fault test) can pick it out. */
export const MIGRATION_APPLICATION_NAME = 'sagaflow-migrate';
/**
 * The toolkit modules whose tables the order service uses, each defining and
 * versioning its own (packages/toolkit/src/schema-versions.ts). They are applied before the
 * service's numbered files, which only add what is the service's (a foreign key
 * from the edge's records to its clients).
 */
export const TOOLKIT_SCHEMAS: readonly ModuleSchema[] = [LEDGER_SCHEMA, EDGE_SCHEMA, INBOX_SCHEMA];

/** How long a process waits for another's migration run before it gives up. */
const MIGRATION_LOCK_WAIT = '120s';

/**
 * Applies the toolkit modules' schemas (TOOLKIT_SCHEMAS), then the service's
 * pending numbered migrations, one process at a time. node-pg-migrate only
 * tries its advisory lock and fails at once ("Another migration is already
 * running") when another process holds it: an API and a worker started together
 * on a new database would lose one of them. So this waits for that same lock
 * first (advisory locks are reentrant within a session, so the runner's own try
 * then succeeds), and the second process finds the files applied.
 */
export async function migrate(databaseUrl: string, schema = 'public'): Promise<string[]> {
  const client = createClient({ connectionString: databaseUrl, application_name: MIGRATION_APPLICATION_NAME });
  // A connection terminated mid-run fails the run (the lock and the transaction go with it); it must not end the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`SET lock_timeout = '${MIGRATION_LOCK_WAIT}'`);
    await client.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK_ID})`).catch((err: { code?: string }) => {
      throw err.code === '55P03'
        ? new Error(`another process has held the migration lock for over ${MIGRATION_LOCK_WAIT}; is a migration stuck?`)
        : err;
    });
    await client.query('SET lock_timeout = 0');
    // Under the lock: two CREATE SCHEMA IF NOT EXISTS at once can still collide on the catalog.
    if (schema !== 'public') await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    await client.query(`SET search_path TO ${quoteIdent(schema)}`);
    const modules = await inClientTransaction(client, async () => {
      const names: string[] = [];
      for (const s of TOOLKIT_SCHEMAS) names.push(...(await applySchema(client, s)));
      return names;
    });
    const applied = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      direction: 'up',
      migrationsTable: 'sagaflow_migrations',
      schema,
      checkOrder: true,
      log: () => undefined,
    });
    return [...modules, ...applied.map((m) => m.name)];
  } finally {
    await client.end();
  }
}

async function inClientTransaction<T>(client: Client, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    if (!isConnectionError(err)) await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Tries `fn` again while it fails for want of a database connection (PostgreSQL
 * restarting, a connection terminated mid-statement, the server not up yet),
 * with backoff from 250 ms to 5 s, for up to `withinMs` (60 s). Then, or at once
 * for any other error, it gives up: a connection failure as a StartupError that
 * says what was tried and for how long. For what a process does before it serves
 * (migrations, its own tables): a terminated connection must not end it.
 */
export async function patientlyAtStartup<T>(
  what: string,
  fn: () => Promise<T>,
  opts: { withinMs?: number; log?: (line: Record<string, unknown>) => void } = {},
): Promise<T> {
  const started = Date.now();
  const withinMs = opts.withinMs ?? 60_000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isConnectionError(err)) throw err;
      const elapsed = Date.now() - started;
      if (elapsed >= withinMs) {
        throw new StartupError(
          `${what}: PostgreSQL could not be reached for ${Math.round(elapsed / 1000)} s (${attempt} attempts); last error: ${(err as Error).message}. ` +
            'Start it, or set DATABASE_URL to where it runs',
          ExitCode.database,
        );
      }
      const delayMs = Math.min(5000, 250 * 2 ** Math.min(attempt - 1, 5), Math.max(0, withinMs - elapsed));
      opts.log?.({ msg: `${what}: database connection failed; retrying`, attempt, delayMs, error: (err as Error).message });
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

/** migrate(), tried again while the database is unreachable or its connection is terminated (patientlyAtStartup). */
export function migratePatiently(
  databaseUrl: string,
  opts: { schema?: string; withinMs?: number; log?: (line: Record<string, unknown>) => void } = {},
): Promise<string[]> {
  return patientlyAtStartup('migrations', () => migrate(databaseUrl, opts.schema), opts);
}

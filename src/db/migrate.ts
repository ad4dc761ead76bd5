import path from 'node:path';
import { Client } from 'pg';
import { runner } from 'node-pg-migrate';
import { quoteIdent } from './pool';

export const MIGRATIONS_DIR = path.join(__dirname, 'migrations');

/** node-pg-migrate's advisory lock (its runner's PG_MIGRATE_LOCK_ID, not exported). */
export const MIGRATION_LOCK_ID = '7241865325823964';
/** How long a process waits for another's migration run before it gives up. */
const MIGRATION_LOCK_WAIT = '120s';

/**
 * Applies pending numbered migrations, one process at a time. node-pg-migrate only
 * tries its advisory lock and fails at once ("Another migration is already
 * running") when another process holds it: an API and a worker started together
 * on a new database would lose one of them. So this waits for that same lock
 * first (advisory locks are reentrant within a session, so the runner's own try
 * then succeeds), and the second process finds the files applied.
 */
export async function migrate(databaseUrl: string, schema = 'public'): Promise<string[]> {
  const client = new Client({ connectionString: databaseUrl });
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
    const applied = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      direction: 'up',
      migrationsTable: 'sagaflow_migrations',
      schema,
      checkOrder: true,
      log: () => undefined,
    });
    return applied.map((m) => m.name);
  } finally {
    await client.end();
  }
}

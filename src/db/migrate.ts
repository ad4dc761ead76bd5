import path from 'node:path';
import { Client } from 'pg';
import { runner } from 'node-pg-migrate';
import { quoteIdent } from './pool';

export const MIGRATIONS_DIR = path.join(__dirname, 'migrations');

/**
 * Applies pending numbered migrations. node-pg-migrate holds a Postgres advisory
 * lock for the run, so two processes starting at once apply each file once.
 */
export async function migrate(databaseUrl: string, schema = 'public'): Promise<string[]> {
  const client = new Client({ connectionString: databaseUrl });
  // A connection terminated mid-run fails the run (the lock and the transaction go with it); it must not end the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
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

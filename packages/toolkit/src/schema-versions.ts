import type { ClientBase } from 'pg';
import { inTransaction, type Db } from './db';

/**
 * Versioned schemas owned by a module (the ledger, the edge, the inbox), as
 * graphile-worker owns its own: each module holds its ordered migrations in its
 * own code and records which it applied, so it can be migrated in any database
 * without the migration tool of the service that uses it.
 *
 * A migration is applied once per schema, in version order, in one transaction
 * under an advisory lock; the record goes in `sagaflow_schema_versions` (one row
 * per module and version) in the first schema of the search path. Every
 * migration must also be safe on a database whose tables an earlier
 * definition already created (IF NOT EXISTS, or a guarded ALTER): databases
 * built before the modules owned their tables reach the same shape.
 */
export interface SchemaMigration {
  /** 1, 2, 3, ...: the order they apply in; never renumbered once released. */
  version: number;
  name: string;
  sql: string;
}

export interface ModuleSchema {
  /** The module's name in the version table (`ledger`, `edge`, `inbox`). */
  module: string;
  migrations: readonly SchemaMigration[];
}

export const SCHEMA_VERSIONS_TABLE = 'sagaflow_schema_versions';

/** One lock per schema for every module: two modules creating the version table at once would collide on the catalog. */
const LOCK_KEY = `${SCHEMA_VERSIONS_TABLE}:`;

/** Applies the module's migrations not yet recorded, on a pool; returns `module/version_name` of each applied. */
export function migrateSchema(db: Db, schema: ModuleSchema): Promise<string[]> {
  return inTransaction(db, (tx) => applySchema(tx, schema));
}

/**
 * The same, inside a transaction the caller has opened on `client` (so a
 * service can apply several modules' schemas, then commit once).
 */
export async function applySchema(client: ClientBase, schema: ModuleSchema): Promise<string[]> {
  checkOrdered(schema);
  await client.query(`SELECT pg_advisory_xact_lock(hashtext($1 || current_schema()))`, [LOCK_KEY]);
  const { rows: where } = await client.query<{ schema: string | null }>('SELECT current_schema() AS schema');
  const current = where[0]?.schema;
  if (!current) throw new Error(`${schema.module} schema: the search path names no schema that exists`);
  const table = `${quoteName(current)}.${SCHEMA_VERSIONS_TABLE}`;
  await client.query(`
    CREATE TABLE IF NOT EXISTS ${table} (
      module     text NOT NULL,
      version    integer NOT NULL,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (module, version)
    )`);
  const { rows } = await client.query<{ version: number; name: string }>(`SELECT version, name FROM ${table} WHERE module = $1`, [
    schema.module,
  ]);
  const recorded = new Map(rows.map((r) => [r.version, r.name]));
  const applied: string[] = [];
  for (const m of schema.migrations) {
    const name = recorded.get(m.version);
    if (name !== undefined) {
      if (name !== m.name) {
        throw new Error(`${schema.module} schema: version ${m.version} is recorded as "${name}", but this code calls it "${m.name}"`);
      }
      continue;
    }
    await client.query(m.sql);
    await client.query(`INSERT INTO ${table} (module, version, name) VALUES ($1, $2, $3)`, [schema.module, m.version, m.name]);
    applied.push(`${schema.module}/${m.version}_${m.name}`);
  }
  return applied;
}

/** Every migration's SQL in order: what a database of its own applies in its own migration tool. */
export function schemaSql(schema: ModuleSchema): string {
  return schema.migrations.map((m) => `-- ${schema.module} ${m.version}: ${m.name}\n${m.sql.trim()}\n`).join('\n');
}

function checkOrdered(schema: ModuleSchema): void {
  schema.migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`${schema.module} schema: migration ${m.name} has version ${m.version}, expected ${i + 1}`);
  });
}

function quoteName(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

import type { Db } from '../db';
import { migrateSchema, schemaSql, type ModuleSchema } from '../schema-versions';

/**
 * The ledger's tables (step_ledger, and ledger_rate_limits for createRateLimiter),
 * defined here and nowhere else: their numbered
 * migrations, applied by migrateLedger (sagaflow's own `migrate` applies them
 * first, then the order service's tables). Each is safe on a database whose
 * table an older sagaflow created through the service's migrations (001, 007,
 * 008, 009 there), so both reach the same shape. 'cancelled' is the tombstone a
 * compensation leaves, whether or not the forward effect had happened.
 */
export const LEDGER_SCHEMA: ModuleSchema = {
  module: 'ledger',
  migrations: [
    {
      version: 1,
      name: 'step_ledger',
      sql: `
CREATE TABLE IF NOT EXISTS step_ledger (
  key         text PRIMARY KEY,
  workflow_id text NOT NULL,
  step        text NOT NULL,
  fingerprint text,
  state       text NOT NULL CHECK (state IN ('pending', 'completed', 'failed', 'cancelled')),
  result      jsonb,
  error       jsonb,
  attempts    integer NOT NULL DEFAULT 1,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS step_ledger_workflow_idx ON step_ledger (workflow_id);`,
    },
    {
      // The retention job finds sagas with no row created since the cutoff through this index.
      // created_at, not updated_at: it never changes, so the hot path's updates stay HOT.
      version: 2,
      name: 'created_index',
      sql: `CREATE INDEX IF NOT EXISTS step_ledger_created_idx ON step_ledger (created_at);`,
    },
    {
      // A tombstone remembers what it buried and why: `undone` is the forward row's state when its
      // compensation tombstoned it (NULL for a step that never ran), `cause` why the saga compensated,
      // so a workflow task retried after it was lost reads the answer the lost task read.
      version: 3,
      name: 'tombstone_memory',
      sql: `
ALTER TABLE step_ledger ADD COLUMN IF NOT EXISTS undone text CHECK (undone IN ('pending', 'completed', 'failed'));
ALTER TABLE step_ledger ADD COLUMN IF NOT EXISTS cause jsonb;`,
    },
    {
      // An external step keeps its input while it is pending, so a compensation that finds it pending
      // can repeat the request under the step's key to learn what the service did.
      version: 4,
      name: 'external_request',
      sql: `ALTER TABLE step_ledger ADD COLUMN IF NOT EXISTS input jsonb;`,
    },
    {
      // One token bucket per rate limiter name (rate-limit.ts), shared by every process on the
      // database. tokens goes below zero while callers wait for their turn (debt); updated_at is
      // PostgreSQL's clock when the tokens were last counted.
      version: 5,
      name: 'rate_limits',
      sql: `
CREATE TABLE IF NOT EXISTS ledger_rate_limits (
  name       text PRIMARY KEY,
  tokens     double precision NOT NULL,
  updated_at timestamptz NOT NULL
);`,
    },
  ],
};

/**
 * Every migration's SQL in order, for a database whose migrations are run by a
 * tool of your own (migrateLedger records what it applied; this does not).
 */
export const LEDGER_DDL = schemaSql(LEDGER_SCHEMA);

/**
 * Creates or upgrades the ledger's tables in the first schema of the pool's
 * search path. Safe to call from every process at start: an advisory lock
 * serialises concurrent callers, and applied versions are recorded.
 */
export async function migrateLedger(db: Db): Promise<void> {
  await migrateSchema(db, LEDGER_SCHEMA);
}

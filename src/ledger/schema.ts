import { inTransaction, type Db } from '../db/pool';

/**
 * The ledger's one table. sagaflow's own numbered migrations create it (001);
 * migrateLedger applies the same definition to a database of your own.
 * 'cancelled' is the tombstone a compensation leaves, whether or not the
 * forward effect had happened; `undone` keeps the state it replaced and
 * `cause` why the saga compensated (migration 008 added both); `input` is an
 * external step's input while it is pending (migration 009).
 */
export const LEDGER_DDL = `
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
CREATE INDEX IF NOT EXISTS step_ledger_workflow_idx ON step_ledger (workflow_id);
CREATE INDEX IF NOT EXISTS step_ledger_created_idx ON step_ledger (created_at);
ALTER TABLE step_ledger ADD COLUMN IF NOT EXISTS undone text CHECK (undone IN ('pending', 'completed', 'failed'));
ALTER TABLE step_ledger ADD COLUMN IF NOT EXISTS cause jsonb;
ALTER TABLE step_ledger ADD COLUMN IF NOT EXISTS input jsonb;
`;

/**
 * Creates the ledger's table in the first schema of the pool's search path, if
 * it is not there. Safe to call from every process at start: an advisory lock
 * serialises concurrent callers.
 */
export async function migrateLedger(db: Db): Promise<void> {
  await inTransaction(db, async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('sagaflow.step_ledger'))`);
    await tx.query(LEDGER_DDL);
  });
}

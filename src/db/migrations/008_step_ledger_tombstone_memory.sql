-- Up Migration

-- A tombstone remembers what it buried and why. `undone` is the forward row's
-- state when its compensation tombstoned it ('completed', 'failed', 'pending';
-- NULL for a step that never ran), so a workflow task retried after it was lost
-- still reads the answer the lost task read. `cause` is why the saga
-- compensated (cancelled or not, and the failure), so a retried task that meets
-- the tombstone of a step with no recorded answer unwinds for the same cause.
ALTER TABLE step_ledger ADD COLUMN IF NOT EXISTS undone text
  CHECK (undone IN ('pending', 'completed', 'failed'));
ALTER TABLE step_ledger ADD COLUMN IF NOT EXISTS cause jsonb;

-- Down Migration
ALTER TABLE step_ledger DROP COLUMN IF EXISTS cause;
ALTER TABLE step_ledger DROP COLUMN IF EXISTS undone;

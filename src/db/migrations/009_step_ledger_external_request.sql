-- Up Migration

-- An external step keeps its input while it is pending: a compensation that
-- finds it pending (its call made, in flight, or never sent) repeats that
-- request under the step's key to learn what the service did, since a real
-- service keeps no tombstone for a key it never saw. The input is cleared when
-- the step settles; a tombstone of a pending step keeps it for the compensation.
ALTER TABLE step_ledger ADD COLUMN IF NOT EXISTS input jsonb;

-- Down Migration
ALTER TABLE step_ledger DROP COLUMN IF EXISTS input;

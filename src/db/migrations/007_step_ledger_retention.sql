-- Up Migration

-- The ledger's retention job finds sagas with no row created since the cutoff
-- through this index, instead of scanning the whole table. created_at, not
-- updated_at: created_at never changes, so the hot path's row updates stay
-- HOT (no index entry to rewrite).
CREATE INDEX IF NOT EXISTS step_ledger_created_idx ON step_ledger (created_at);

-- Down Migration
DROP INDEX IF EXISTS step_ledger_created_idx;

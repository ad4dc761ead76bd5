-- Up Migration

-- The ledger's retention job finds sagas whose rows all stopped changing before
-- the cutoff through this index, instead of scanning the whole table.
CREATE INDEX IF NOT EXISTS step_ledger_updated_idx ON step_ledger (updated_at);

-- Down Migration
DROP INDEX IF EXISTS step_ledger_updated_idx;

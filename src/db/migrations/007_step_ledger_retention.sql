-- Up Migration

-- Added step_ledger_created_idx. The step ledger is the ledger module's own table now
-- (packages/toolkit/src/ledger/schema.ts, version 2), which `migrate` applies before these files,
-- on a database that ran this file or not. Nothing is left to do here; the
-- file stays, as node-pg-migrate records it by name.

-- Down Migration

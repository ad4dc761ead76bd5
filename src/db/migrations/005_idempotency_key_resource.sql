-- Up Migration

-- Renamed idempotency_keys.order_id to resource_id. The table is the edge
-- module's own now (packages/toolkit/src/edge/keys.ts): its first migration creates it with
-- resource_id, or renames the column of a table this file never reached.
-- Nothing is left to do here; the file stays, as node-pg-migrate records it by name.

-- Down Migration

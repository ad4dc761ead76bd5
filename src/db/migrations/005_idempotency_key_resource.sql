-- Up Migration

-- An Idempotency-Key record maps a client's key to whatever resource its first
-- request created: an order here, anything in another service using the same records.
ALTER TABLE idempotency_keys RENAME COLUMN order_id TO resource_id;

-- Down Migration
ALTER TABLE idempotency_keys RENAME COLUMN resource_id TO order_id;

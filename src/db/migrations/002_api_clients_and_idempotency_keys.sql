-- Up Migration

-- API clients authenticate with a bearer key; only its SHA-256 is stored.
CREATE TABLE api_clients (
  id         text PRIMARY KEY,
  name       text NOT NULL UNIQUE,
  key_hash   text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

-- Orders created through the API belong to one client; other clients never see them.
ALTER TABLE orders ADD COLUMN client_id text REFERENCES api_clients (id);
CREATE INDEX orders_client_idx ON orders (client_id);

-- HTTP Idempotency-Key records are the edge module's table (packages/toolkit/src/edge/keys.ts),
-- which `migrate` applies before these files (this file created it once; a
-- database migrated then has it from here). The key row and the order row
-- commit in one transaction; a key belongs to one of the service's clients.
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_client_id_fkey
  FOREIGN KEY (client_id) REFERENCES api_clients (id);

-- Down Migration
ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_client_id_fkey;
ALTER TABLE orders DROP COLUMN client_id;
DROP TABLE api_clients;

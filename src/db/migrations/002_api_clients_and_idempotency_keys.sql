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

-- HTTP Idempotency-Key records, scoped per client. The key row and the order
-- row commit in one transaction; the response is stored byte for byte so a
-- replay, even after a restart, returns exactly the first answer.
CREATE TABLE idempotency_keys (
  client_id       text NOT NULL REFERENCES api_clients (id),
  key             text NOT NULL,
  fingerprint     text NOT NULL,
  order_id        text NOT NULL,
  state           text NOT NULL CHECK (state IN ('in_flight', 'completed')),
  -- Who is working on it, until when; a retry after the lease heals a crashed request.
  locked_until    timestamptz NOT NULL,
  response_status integer,
  response_body   text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  PRIMARY KEY (client_id, key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

-- Down Migration
DROP TABLE idempotency_keys;
ALTER TABLE orders DROP COLUMN client_id;
DROP TABLE api_clients;

-- Up Migration

-- Money is integer minor units plus an ISO 4217 currency; never a float.
CREATE TABLE orders (
  id               text PRIMARY KEY,
  customer_id      text NOT NULL,
  amount_minor     bigint NOT NULL CHECK (amount_minor > 0),
  currency         char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  payment_token    text NOT NULL,
  shipping_address jsonb NOT NULL,
  status           text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'completed', 'cancelled', 'failed')),
  failure_reason   text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
  order_id text NOT NULL REFERENCES orders (id),
  sku      text NOT NULL,
  quantity integer NOT NULL CHECK (quantity > 0),
  PRIMARY KEY (order_id, sku)
);

CREATE TABLE inventory (
  sku      text PRIMARY KEY,
  on_hand  integer NOT NULL CHECK (on_hand >= 0),
  reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand)
);

CREATE TABLE reservations (
  order_id text NOT NULL,
  sku      text NOT NULL REFERENCES inventory (sku),
  quantity integer NOT NULL CHECK (quantity > 0),
  status   text NOT NULL CHECK (status IN ('held', 'released', 'consumed')),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (order_id, sku)
);

-- Local view of a charge: pending -> captured | declined; captured -> refunded;
-- pending -> voided when compensation ran before the outcome was known.
CREATE TABLE payments (
  idempotency_key    text PRIMARY KEY,
  order_id           text NOT NULL,
  amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
  currency           char(3) NOT NULL,
  status             text NOT NULL CHECK (status IN ('pending', 'captured', 'declined', 'refunded', 'voided')),
  provider_charge_id text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_order_idx ON payments (order_id);

CREATE TABLE shipments (
  idempotency_key     text PRIMARY KEY,
  order_id            text NOT NULL,
  status              text NOT NULL CHECK (status IN ('pending', 'created', 'voided')),
  carrier_shipment_id text,
  tracking_number     text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shipments_order_idx ON shipments (order_id);

-- The idempotency ledger: one row per step key. 'cancelled' is the tombstone a
-- compensation leaves, whether or not the forward effect had happened.
CREATE TABLE step_ledger (
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
CREATE INDEX step_ledger_workflow_idx ON step_ledger (workflow_id);

-- The payment provider's and the carrier's own books. They are separate
-- services; they share the database only for convenience of the dev stack.
CREATE TABLE provider_charges (
  idempotency_key text PRIMARY KEY,
  id              text UNIQUE,
  fingerprint     text,
  amount_minor    bigint,
  currency        char(3),
  source          text,
  status          text NOT NULL CHECK (status IN ('succeeded', 'declined', 'refunded', 'canceled')),
  response        jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE provider_refunds (
  idempotency_key text PRIMARY KEY,
  charge_key      text NOT NULL,
  response        jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE carrier_shipments (
  idempotency_key text PRIMARY KEY,
  id              text UNIQUE,
  fingerprint     text,
  tracking_number text,
  status          text NOT NULL CHECK (status IN ('created', 'voided', 'canceled')),
  response        jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE carrier_voids (
  idempotency_key text PRIMARY KEY,
  shipment_key    text NOT NULL,
  response        jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE carrier_voids, carrier_shipments, provider_refunds, provider_charges,
  step_ledger, shipments, payments, reservations, inventory, order_items, orders;

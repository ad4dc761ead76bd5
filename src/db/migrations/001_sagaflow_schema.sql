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

-- The step ledger (step_ledger) was created here too; it is the ledger module's
-- own table now (packages/toolkit/src/ledger/schema.ts), which `migrate` applies before these
-- files. So were the payment provider's and the carrier's books; they are the
-- simulated services' own (dev/services/schema.ts). A database migrated before
-- this change has them from here: the owners' migrations take them as they are.

-- Down Migration
DROP TABLE shipments, payments, reservations, inventory, order_items, orders;

import { inTransaction, type Db } from '../../src/db/pool';

/**
 * The simulated payment provider's and carrier's own books. They keep what a
 * real provider keeps: an effect per idempotency key that was used, a reversal
 * per reversal key; nothing for a key never seen ('canceled' rows are from an
 * older version that tombstoned such keys). They share the dev
 * database for convenience only; each service creates its tables when it starts.
 */
const DEV_SERVICES_DDL = `
CREATE TABLE IF NOT EXISTS provider_charges (
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

CREATE TABLE IF NOT EXISTS provider_refunds (
  idempotency_key text PRIMARY KEY,
  charge_key      text NOT NULL,
  response        jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- Refunds name the charge by its id, as a real provider's do (an older table named its key).
ALTER TABLE provider_refunds ADD COLUMN IF NOT EXISTS charge_id text;
ALTER TABLE provider_refunds ALTER COLUMN charge_key DROP NOT NULL;

CREATE TABLE IF NOT EXISTS carrier_shipments (
  idempotency_key text PRIMARY KEY,
  id              text UNIQUE,
  fingerprint     text,
  tracking_number text,
  status          text NOT NULL CHECK (status IN ('created', 'voided', 'canceled')),
  response        jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS carrier_voids (
  idempotency_key text PRIMARY KEY,
  shipment_key    text NOT NULL,
  response        jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE carrier_voids ADD COLUMN IF NOT EXISTS shipment_id text;
ALTER TABLE carrier_voids ALTER COLUMN shipment_key DROP NOT NULL;
`;

/** Creates the services' tables in the first schema of the pool's search path, if they are not there. */
export async function migrateDevServices(db: Db): Promise<void> {
  await inTransaction(db, async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('sagaflow.dev-services'))`);
    await tx.query(DEV_SERVICES_DDL);
  });
}

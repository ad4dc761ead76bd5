import { inTransaction, type Db } from '../../src/db/pool';

/**
 * The simulated payment provider's and carrier's own books. They share the dev
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
`;

/** Creates the services' tables in the first schema of the pool's search path, if they are not there. */
export async function migrateDevServices(db: Db): Promise<void> {
  await inTransaction(db, async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('sagaflow.dev-services'))`);
    await tx.query(DEV_SERVICES_DDL);
  });
}

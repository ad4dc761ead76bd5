import { inTransaction, migrateLedger, type Db } from '@sagaflow/toolkit/ledger';

/** The trip saga's tables, and the ledger's. Idempotent: safe at every start. */
export async function migrateTrips(db: Db): Promise<void> {
  await migrateLedger(db);
  await inTransaction(db, async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('sagaflow.example.trips'))`);
    await tx.query(`
      CREATE TABLE IF NOT EXISTS trips (
        id             text PRIMARY KEY,
        traveller      text NOT NULL,
        status         text NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled', 'failed')),
        itinerary      jsonb,
        failure_reason text,
        created_at     timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE IF NOT EXISTS trip_inventory (
        kind     text NOT NULL CHECK (kind IN ('flight', 'hotel', 'car')),
        item     text NOT NULL,
        capacity integer NOT NULL CHECK (capacity >= 0),
        held     integer NOT NULL DEFAULT 0 CHECK (held >= 0),
        booked   integer NOT NULL DEFAULT 0 CHECK (booked >= 0),
        PRIMARY KEY (kind, item),
        CHECK (held + booked <= capacity)
      );
      CREATE TABLE IF NOT EXISTS trip_holds (
        trip_id text NOT NULL,
        kind    text NOT NULL,
        item    text NOT NULL,
        status  text NOT NULL CHECK (status IN ('held', 'released', 'booked')),
        PRIMARY KEY (trip_id, kind)
      );
      CREATE TABLE IF NOT EXISTS trip_deposits (
        idempotency_key    text PRIMARY KEY,
        trip_id            text NOT NULL,
        amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
        currency           char(3) NOT NULL,
        status             text NOT NULL CHECK (status IN ('pending', 'captured', 'declined', 'refunded', 'voided')),
        provider_charge_id text
      );`);
  });
}

-- Up Migration

-- The simulated payment provider's and carrier's own books are not sagaflow's:
-- in production those services are someone else's. They now create their
-- tables themselves (dev/services/schema.ts) when they start; a production
-- database no longer carries them. In a dev database this drops the fakes'
-- records, which they recreate empty.
--
-- Only the tables 001 once created: a database migrated since 001 stopped
-- creating them has none, unless the simulated services made their own (their
-- refunds name the charge by its id), and those are theirs to keep.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                  WHERE table_schema = current_schema() AND table_name = 'provider_refunds' AND column_name = 'charge_id') THEN
    DROP TABLE IF EXISTS carrier_voids, carrier_shipments, provider_refunds, provider_charges;
  END IF;
END $$;

-- Down Migration
-- Nothing to restore: the dev services recreate their tables on start.

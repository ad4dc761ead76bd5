-- Up Migration

-- The simulated payment provider's and carrier's own books are not sagaflow's:
-- in production those services are someone else's. They now create their
-- tables themselves (dev/services/schema.ts) when they start; a production
-- database no longer carries them. In a dev database this drops the fakes'
-- records, which they recreate empty.
DROP TABLE IF EXISTS carrier_voids, carrier_shipments, provider_refunds, provider_charges;

-- Down Migration
-- Nothing to restore: the dev services recreate their tables on start.

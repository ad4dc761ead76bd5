-- Up Migration

-- The saga that owns an order: its compensation may close the row only if the
-- row names it. The API inserts the row itself before the saga starts, so the
-- record step's own ledger entry cannot be the proof of ownership.
ALTER TABLE orders ADD COLUMN workflow_id text;
UPDATE orders SET workflow_id = 'order-' || id;
ALTER TABLE orders ALTER COLUMN workflow_id SET NOT NULL;

-- When the order's saga was known to be started. A pending order without it,
-- older than a request's lease, was abandoned between the API's commit and the
-- saga's start: the recovery job starts its saga.
ALTER TABLE orders ADD COLUMN saga_started_at timestamptz;
UPDATE orders SET saga_started_at = created_at;
CREATE INDEX orders_saga_not_started_idx ON orders (created_at)
  WHERE saga_started_at IS NULL AND status = 'pending';

-- Down Migration
DROP INDEX orders_saga_not_started_idx;
ALTER TABLE orders DROP COLUMN saga_started_at;
ALTER TABLE orders DROP COLUMN workflow_id;

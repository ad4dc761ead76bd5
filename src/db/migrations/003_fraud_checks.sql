-- Up Migration

-- One risk assessment per order, written by the fraud-check step; a
-- compensation voids it, so a voided order never counts as vetted.
CREATE TABLE fraud_checks (
  order_id   text PRIMARY KEY,
  decision   text NOT NULL CHECK (decision IN ('approved')),
  score      integer NOT NULL CHECK (score BETWEEN 0 AND 100),
  reasons    jsonb NOT NULL,
  status     text NOT NULL CHECK (status IN ('active', 'voided')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE fraud_checks;

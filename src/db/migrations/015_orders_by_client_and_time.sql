-- Up Migration

-- GET /orders pages through one client's orders newest first, by keyset: (created_at, id) below
-- the last one seen. This index answers each page with one range scan in that order (no sort, and
-- rows inserted meanwhile never shift a page), and serves every lookup by client_id the index it
-- replaces served.
CREATE INDEX orders_client_created_idx ON orders (client_id, created_at DESC, id DESC);
DROP INDEX orders_client_idx;

-- The same order over every client's orders, for the operators' `sagaflow sagas list`.
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);

-- The open orders, read at every scrape of the API's /metrics for the open-saga gauges
-- (src/observability/open-sagas.ts): the few rows still pending however many orders have ended
-- (20 of 20,000 in a plan: a bitmap scan of this index, not of the table), each saga's ledger
-- rows then found by workflow_id.
CREATE INDEX orders_open_idx ON orders (workflow_id) INCLUDE (created_at, saga_started_at) WHERE status = 'pending';

-- Down Migration
DROP INDEX orders_open_idx;
DROP INDEX orders_created_idx;
CREATE INDEX orders_client_idx ON orders (client_id);
DROP INDEX orders_client_created_idx;

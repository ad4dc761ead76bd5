-- Up Migration

-- The outbox: every change of an order's state (created, completed, cancelled,
-- compensated) writes an event row in the same transaction as the change. A
-- trigger writes it, so no door and no activity can change an order without its
-- event (the HTTP API, the stream intake, the saga's own steps alike). The relay
-- (src/orders/relay.ts) publishes the rows to JetStream in order per order and
-- marks them published; published rows are purged after a retention.
CREATE TABLE order_events (
  position     bigserial PRIMARY KEY,
  event_id     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  order_id     text NOT NULL,
  client_id    text,
  type         text NOT NULL CHECK (type IN ('created', 'completed', 'cancelled', 'compensated')),
  data         jsonb NOT NULL,
  occurred_at  timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
-- What the relay reads: each order's unpublished events, oldest first.
CREATE INDEX order_events_unpublished_idx ON order_events (order_id, position) WHERE published_at IS NULL;
CREATE INDEX order_events_published_idx ON order_events (published_at) WHERE published_at IS NOT NULL;

CREATE FUNCTION order_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  kind text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    kind := 'created';
  ELSE
    kind := CASE NEW.status WHEN 'completed' THEN 'completed' WHEN 'cancelled' THEN 'cancelled' WHEN 'failed' THEN 'compensated' END;
  END IF;
  IF kind IS NULL THEN
    RETURN NULL;
  END IF;
  INSERT INTO order_events (order_id, client_id, type, data)
  VALUES (NEW.id, NEW.client_id, kind, jsonb_build_object(
    'orderId', NEW.id,
    'status', NEW.status,
    'customerId', NEW.customer_id,
    'amount', jsonb_build_object('amountMinor', NEW.amount_minor, 'currency', NEW.currency),
    'items', coalesce((SELECT jsonb_agg(jsonb_build_object('sku', i.sku, 'quantity', i.quantity) ORDER BY i.sku)
                         FROM order_items i WHERE i.order_id = NEW.id), '[]'::jsonb),
    'failureReason', NEW.failure_reason));
  RETURN NULL;
END;
$$;

CREATE TRIGGER order_created AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION order_event();
CREATE TRIGGER order_status_changed AFTER UPDATE OF status ON orders FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION order_event();

-- Down Migration
DROP TRIGGER order_status_changed ON orders;
DROP TRIGGER order_created ON orders;
DROP FUNCTION order_event();
DROP TABLE order_events;

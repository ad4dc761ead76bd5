-- Up Migration

-- A compensation that failed for good (a refund the provider refuses, say) leaves its step done:
-- money or stock may still be held, and a person must look. The saga writes each such failure on
-- its order before the next compensation runs (activities/orders.ts recordCompensationFailure),
-- once per step, so the order's own row says which steps were left done.
ALTER TABLE orders ADD COLUMN compensation_failures jsonb
  CHECK (compensation_failures IS NULL OR jsonb_typeof(compensation_failures) = 'array');

-- Two more event kinds: `compensation_failed`, one per failure as it is written, and `failed`, the
-- end of an order whose saga could not undo everything (in place of `compensated` or `cancelled`).
ALTER TABLE order_events DROP CONSTRAINT order_events_type_check;
ALTER TABLE order_events ADD CONSTRAINT order_events_type_check
  CHECK (type IN ('created', 'completed', 'cancelled', 'compensated', 'failed', 'compensation_failed'));

-- One event's data, the same for every kind; the failures only where there are some.
CREATE FUNCTION order_event_data(o orders) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'orderId', o.id,
    'status', o.status,
    'customerId', o.customer_id,
    'amount', jsonb_build_object('amountMinor', o.amount_minor, 'currency', o.currency),
    'items', coalesce((SELECT jsonb_agg(jsonb_build_object('sku', i.sku, 'quantity', i.quantity) ORDER BY i.sku)
                         FROM order_items i WHERE i.order_id = o.id), '[]'::jsonb),
    'failureReason', o.failure_reason)
  || CASE WHEN o.compensation_failures IS NULL THEN '{}'::jsonb
          ELSE jsonb_build_object('compensationFailures', o.compensation_failures) END
$$;

CREATE OR REPLACE FUNCTION order_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  kind text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    kind := 'created';
  ELSIF NEW.status IN ('cancelled', 'failed') AND NEW.compensation_failures IS NOT NULL THEN
    kind := 'failed';
  ELSE
    kind := CASE NEW.status WHEN 'completed' THEN 'completed' WHEN 'cancelled' THEN 'cancelled' WHEN 'failed' THEN 'compensated' END;
  END IF;
  IF kind IS NULL THEN
    RETURN NULL;
  END IF;
  INSERT INTO order_events (order_id, client_id, type, data) VALUES (NEW.id, NEW.client_id, kind, order_event_data(NEW));
  RETURN NULL;
END;
$$;

-- The failure just written is the array's last element: the event names it on its own.
CREATE FUNCTION order_compensation_failed_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO order_events (order_id, client_id, type, data)
  VALUES (NEW.id, NEW.client_id, 'compensation_failed',
          order_event_data(NEW) || jsonb_build_object('compensationFailure', NEW.compensation_failures -> -1));
  RETURN NULL;
END;
$$;

-- Fires before order_status_changed (triggers fire in name order) should one update do both.
CREATE TRIGGER order_compensation_failed AFTER UPDATE OF compensation_failures ON orders FOR EACH ROW
  WHEN (NEW.compensation_failures IS NOT NULL AND OLD.compensation_failures IS DISTINCT FROM NEW.compensation_failures)
  EXECUTE FUNCTION order_compensation_failed_event();

-- Down Migration
DROP TRIGGER order_compensation_failed ON orders;
DROP FUNCTION order_compensation_failed_event();
CREATE OR REPLACE FUNCTION order_event() RETURNS trigger LANGUAGE plpgsql AS $$
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
DROP FUNCTION order_event_data(orders);
ALTER TABLE order_events DROP CONSTRAINT order_events_type_check;
DELETE FROM order_events WHERE type IN ('failed', 'compensation_failed');
ALTER TABLE order_events ADD CONSTRAINT order_events_type_check
  CHECK (type IN ('created', 'completed', 'cancelled', 'compensated'));
ALTER TABLE orders DROP COLUMN compensation_failures;

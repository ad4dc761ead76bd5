-- Up Migration

-- Who may use the admin API: an API client's scope. Keys of scope 'orders' (every key made before)
-- reach the order and webhook routes; keys of scope 'admin' (`sagaflow clients create NAME --admin`)
-- reach the admin routes only.
ALTER TABLE api_clients ADD COLUMN scope text NOT NULL DEFAULT 'orders' CHECK (scope IN ('orders', 'admin'));

-- Every operator action on sagas (`sagaflow sagas ...`, /admin), as asked and as it ended: one row
-- per saga touched (a bulk action writes one per saga, and one for its dry run), written before the
-- action and finished after it.
CREATE TABLE operator_actions (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text NOT NULL,
  action      text NOT NULL CHECK (action IN ('retry-compensation', 'resolve', 'cancel', 'terminate')),
  order_id    text,
  workflow_id text,
  -- A bulk action's selection, as given.
  selection   jsonb,
  dry_run     boolean NOT NULL DEFAULT false,
  note        text,
  -- What it did ({"ok": true, ...} or {"ok": false, "error": ...}); NULL while it runs.
  outcome     jsonb,
  finished_at timestamptz
);
CREATE INDEX operator_actions_order_idx ON operator_actions (order_id, at);
CREATE INDEX operator_actions_at_idx ON operator_actions (at);

-- A compensation failure resolved: retried by an operator and done, or settled by hand. The
-- resolution is written into its entry of orders.compensation_failures ({"resolution": {"how":
-- "retried" | "manual", "by", "note", "at"}}), and the outbox tells the books' readers.
ALTER TABLE order_events DROP CONSTRAINT order_events_type_check;
ALTER TABLE order_events ADD CONSTRAINT order_events_type_check
  CHECK (type IN ('created', 'completed', 'cancelled', 'compensated', 'failed', 'compensation_failed', 'compensation_resolved'));

-- One event per entry that changed: a new failure (the array grew) is `compensation_failed`, as
-- before; an entry that gained its resolution is `compensation_resolved`, naming that entry.
CREATE OR REPLACE FUNCTION order_compensation_failed_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  entry jsonb;
BEGIN
  IF jsonb_array_length(NEW.compensation_failures) > coalesce(jsonb_array_length(OLD.compensation_failures), 0) THEN
    INSERT INTO order_events (order_id, client_id, type, data)
    VALUES (NEW.id, NEW.client_id, 'compensation_failed',
            order_event_data(NEW) || jsonb_build_object('compensationFailure', NEW.compensation_failures -> -1));
  END IF;
  FOR entry IN
    SELECT e FROM jsonb_array_elements(NEW.compensation_failures) e
     WHERE e ? 'resolution'
       AND NOT coalesce(OLD.compensation_failures, '[]'::jsonb) @> jsonb_build_array(e)
  LOOP
    INSERT INTO order_events (order_id, client_id, type, data)
    VALUES (NEW.id, NEW.client_id, 'compensation_resolved', order_event_data(NEW) || jsonb_build_object('compensationResolution', entry));
  END LOOP;
  RETURN NULL;
END;
$$;

-- Down Migration
CREATE OR REPLACE FUNCTION order_compensation_failed_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO order_events (order_id, client_id, type, data)
  VALUES (NEW.id, NEW.client_id, 'compensation_failed',
          order_event_data(NEW) || jsonb_build_object('compensationFailure', NEW.compensation_failures -> -1));
  RETURN NULL;
END;
$$;
DELETE FROM order_events WHERE type = 'compensation_resolved';
ALTER TABLE order_events DROP CONSTRAINT order_events_type_check;
ALTER TABLE order_events ADD CONSTRAINT order_events_type_check
  CHECK (type IN ('created', 'completed', 'cancelled', 'compensated', 'failed', 'compensation_failed'));
DROP TABLE operator_actions;
ALTER TABLE api_clients DROP COLUMN scope;

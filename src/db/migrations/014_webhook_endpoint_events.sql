-- Up Migration

-- An endpoint disabled after its attempts kept failing (or enabled again) is an event of its
-- own, written by a trigger in the transaction that changes the endpoint, as order events are;
-- the relay publishes it (src/webhooks/endpoint-events.ts), so whoever answers for the client
-- learns that its deliveries have stopped without having to poll the endpoint.
CREATE TABLE webhook_endpoint_events (
  position     bigserial PRIMARY KEY,
  event_id     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  endpoint_id  text NOT NULL,
  client_id    text NOT NULL,
  type         text NOT NULL CHECK (type IN ('disabled', 'enabled')),
  data         jsonb NOT NULL,
  occurred_at  timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
CREATE INDEX webhook_endpoint_events_unpublished_idx ON webhook_endpoint_events (endpoint_id, position) WHERE published_at IS NULL;
CREATE INDEX webhook_endpoint_events_published_idx ON webhook_endpoint_events (published_at) WHERE published_at IS NOT NULL;

CREATE FUNCTION webhook_endpoint_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO webhook_endpoint_events (endpoint_id, client_id, type, data)
  VALUES (NEW.id, NEW.client_id, CASE WHEN NEW.disabled_at IS NULL THEN 'enabled' ELSE 'disabled' END,
          jsonb_build_object('endpointId', NEW.id, 'clientId', NEW.client_id, 'url', NEW.url,
                             'disabledAt', NEW.disabled_at, 'reason', NEW.disabled_reason));
  RETURN NULL;
END;
$$;

CREATE TRIGGER webhook_endpoint_disabled_or_enabled AFTER UPDATE OF disabled_at ON webhook_endpoints FOR EACH ROW
  WHEN ((OLD.disabled_at IS NULL) <> (NEW.disabled_at IS NULL)) EXECUTE FUNCTION webhook_endpoint_event();

-- Down Migration
DROP TRIGGER webhook_endpoint_disabled_or_enabled ON webhook_endpoints;
DROP FUNCTION webhook_endpoint_event();
DROP TABLE webhook_endpoint_events;

-- Up Migration

-- Webhooks: an API client's endpoints, and one delivery per (endpoint, order event)
-- of the client's own orders, written by a trigger on the outbox in the transaction
-- of the order change itself, so no event is ever missed or delivered to another
-- client. Every attempt is recorded. See src/webhooks/.
CREATE TABLE webhook_endpoints (
  id                   text PRIMARY KEY,
  client_id            text NOT NULL REFERENCES api_clients (id),
  url                  text NOT NULL,
  -- The signing secret, encrypted (AES-256-GCM under WEBHOOK_SECRETS_KEY): a signature
  -- needs the secret itself, so it cannot be kept as a one-way hash as API keys are.
  secret_sealed        text NOT NULL,
  created_at           timestamptz NOT NULL DEFAULT now(),
  deleted_at           timestamptz,
  disabled_at          timestamptz,
  disabled_reason      text,
  consecutive_failures integer NOT NULL DEFAULT 0
);
CREATE INDEX webhook_endpoints_client_idx ON webhook_endpoints (client_id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
  id              text PRIMARY KEY,
  endpoint_id     text NOT NULL REFERENCES webhook_endpoints (id),
  event_id        uuid NOT NULL,
  event_position  bigint NOT NULL,
  order_id        text NOT NULL,
  type            text NOT NULL,
  data            jsonb NOT NULL,
  occurred_at     timestamptz NOT NULL,
  state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  -- A replay starts a fresh round of retries from here.
  round_start     integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_until    timestamptz,
  last_status     integer,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz,
  UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (endpoint_id, event_position) WHERE state = 'pending';

CREATE TABLE webhook_attempts (
  delivery_id text NOT NULL REFERENCES webhook_deliveries (id),
  attempt     integer NOT NULL,
  at          timestamptz NOT NULL DEFAULT now(),
  status      integer,
  error       text,
  duration_ms integer NOT NULL,
  PRIMARY KEY (delivery_id, attempt)
);

-- Each event of a client's order fans out to the client's live endpoints, in the
-- transaction that wrote the event (and so the order change itself).
CREATE FUNCTION webhook_fanout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_position, order_id, type, data, occurred_at)
  SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), e.id, NEW.event_id, NEW.position, NEW.order_id, NEW.type, NEW.data, NEW.occurred_at
    FROM webhook_endpoints e
   WHERE e.client_id = NEW.client_id AND e.deleted_at IS NULL AND e.disabled_at IS NULL;
  RETURN NULL;
END;
$$;

CREATE TRIGGER order_event_webhooks AFTER INSERT ON order_events FOR EACH ROW
  WHEN (NEW.client_id IS NOT NULL) EXECUTE FUNCTION webhook_fanout();

-- Down Migration
DROP TRIGGER order_event_webhooks ON order_events;
DROP FUNCTION webhook_fanout();
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;

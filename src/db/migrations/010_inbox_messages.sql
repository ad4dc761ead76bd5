-- Up Migration

-- The inbox: every message a stream intake processed, claimed in the same
-- transaction as the order it created, so a redelivery or a producer's retry at
-- any later time (within the retention, far longer than the broker's duplicate
-- window) creates nothing twice. See src/inbox/inbox.ts.
CREATE TABLE inbox_messages (
  source       text NOT NULL,
  message_id   text NOT NULL,
  fingerprint  text NOT NULL,
  resource_id  text NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  PRIMARY KEY (source, message_id)
);
CREATE INDEX inbox_messages_expiry_idx ON inbox_messages (expires_at);

-- Down Migration
DROP TABLE inbox_messages;

import { inTransaction, isPermanentDataError, type Db, type Tx } from '../db';
import { migrateSchema, schemaSql, type ModuleSchema } from '../schema-versions';
import { hasLoneSurrogate, storableText } from '../text';

/**
 * Idempotent message processing (the inbox): each message's ID is claimed in
 * `inbox_messages` in the same transaction as the effect it causes, so a message
 * delivered twice, at any time within the inbox's retention (hours or weeks, not
 * the broker's two-minute duplicate window), applies once. The row keeps the
 * payload's fingerprint and the resource it created: a redelivery with the same
 * payload is acknowledged with that resource, one with another payload is a
 * conflict. Nothing here knows a broker: a transport (./jetstream.ts) turns the
 * verdict into an ack, a delayed redelivery or a dead letter.
 */
export type InboxClaim =
  | { kind: 'new'; resourceId: string }
  | { kind: 'duplicate'; resourceId: string }
  | { kind: 'conflict'; resourceId: string };

export interface InboxClaimRequest {
  /** Where the message came from (a stream, a topic): IDs are unique per source. */
  source: string;
  messageId: string;
  fingerprint: string;
  /** The resource a new message creates; used only if the message is new. */
  newResourceId: string;
  /** How long the record is kept (purgeInbox deletes it after). */
  retentionMs: number;
}

/** A message ID as the inbox keeps it: 1 to 255 characters of storable text. */
export function messageIdProblem(id: string | undefined): string | undefined {
  if (id === undefined || id.length === 0) return 'the message has no ID';
  if (id.length > 255) return 'the message ID is longer than 255 characters';
  if (id !== storableText(id) || hasLoneSurrogate(id)) return 'the message ID carries text PostgreSQL cannot store';
  return undefined;
}

/** Claims the message inside the caller's transaction, the one that also applies its effect. */
export async function claimMessage(tx: Tx, r: InboxClaimRequest): Promise<InboxClaim> {
  const inserted = await tx.query(
    `INSERT INTO inbox_messages (source, message_id, fingerprint, resource_id, expires_at)
     VALUES ($1, $2, $3, $4, now() + $5 * interval '1 ms')
     ON CONFLICT (source, message_id) DO NOTHING`,
    [r.source, r.messageId, r.fingerprint, r.newResourceId, r.retentionMs],
  );
  if (inserted.rowCount === 1) return { kind: 'new', resourceId: r.newResourceId };
  const existing = await tx.query<{ fingerprint: string; resource_id: string }>(
    'SELECT fingerprint, resource_id FROM inbox_messages WHERE source = $1 AND message_id = $2',
    [r.source, r.messageId],
  );
  const row = existing.rows[0];
  // Purged between the two statements: the caller's retry claims it afresh.
  if (!row) throw new Error(`inbox record ${r.source}/${r.messageId} vanished while claimed`);
  return row.fingerprint === r.fingerprint ? { kind: 'duplicate', resourceId: row.resource_id } : { kind: 'conflict', resourceId: row.resource_id };
}

/** A message that can never be processed as it is: dead-lettered at once, nothing written. */
export class InvalidMessage extends Error {
  constructor(
    message: string,
    readonly reason: 'invalid' | 'unstorable' = 'invalid',
  ) {
    super(message);
    this.name = 'InvalidMessage';
  }
}

/** What a handler makes of one kind of message. */
export interface InboxHandler<P> {
  /** The source the message IDs are unique in. */
  source: string;
  /** Decodes and validates the body; throws InvalidMessage for one that can never be processed. */
  parse(body: Uint8Array): { payload: P; fingerprint: string; messageId?: string };
  newResourceId(payload: P): string;
  /** Applies the message's effect in the claim's transaction (only for a new message). */
  apply(tx: Tx, payload: P, resourceId: string): Promise<void>;
  /**
   * Work after the commit that must be done before the ack (starting a saga by its
   * deterministic ID); runs for a new message and again for every redelivery, so it
   * must be idempotent. A failure leaves the message unacknowledged: redelivered, it
   * finds its record and runs this again.
   */
  afterCommit?(resourceId: string, payload: P, claim: 'new' | 'duplicate'): Promise<void>;
}

export interface InboxMessage {
  /** From the transport's headers; else the handler's parse may find one in the body. */
  messageId?: string;
  body: Uint8Array;
}

export type DeadLetterReason = 'invalid' | 'unstorable' | 'conflict' | 'exhausted';

export type InboxVerdict =
  | { kind: 'ack'; resourceId: string; claim: 'new' | 'duplicate' }
  | { kind: 'retry'; error: string }
  | { kind: 'dead-letter'; reason: DeadLetterReason; detail: string; resourceId?: string };

/**
 * Processes one delivery: decode, claim and apply in one transaction, the after-commit
 * work, then the verdict. Never throws for the message's sake: a failure that another
 * delivery may not meet (the database or Temporal unreachable) is `retry`.
 */
export async function processMessage<P>(db: Db, handler: InboxHandler<P>, msg: InboxMessage, retentionMs: number): Promise<InboxVerdict> {
  let parsed: ReturnType<InboxHandler<P>['parse']>;
  try {
    parsed = handler.parse(msg.body);
  } catch (err) {
    if (err instanceof InvalidMessage) return { kind: 'dead-letter', reason: err.reason, detail: err.message };
    throw err;
  }
  const messageId = msg.messageId ?? parsed.messageId;
  const idProblem = messageIdProblem(messageId);
  if (idProblem) return { kind: 'dead-letter', reason: 'invalid', detail: idProblem };
  let claim: InboxClaim;
  try {
    claim = await inTransaction(db, async (tx) => {
      const c = await claimMessage(tx, {
        source: handler.source,
        messageId: messageId!,
        fingerprint: parsed.fingerprint,
        newResourceId: handler.newResourceId(parsed.payload),
        retentionMs,
      });
      if (c.kind === 'new') await handler.apply(tx, parsed.payload, c.resourceId);
      return c;
    });
  } catch (err) {
    // The same statement with the same data fails the same way every time.
    if (isPermanentDataError(err)) return { kind: 'dead-letter', reason: 'unstorable', detail: storableText((err as Error).message) };
    return { kind: 'retry', error: storableText((err as Error).message) };
  }
  if (claim.kind === 'conflict') {
    return {
      kind: 'dead-letter',
      reason: 'conflict',
      detail: `message ID ${messageId} was already processed with another payload (it created ${claim.resourceId})`,
      resourceId: claim.resourceId,
    };
  }
  try {
    await handler.afterCommit?.(claim.resourceId, parsed.payload, claim.kind);
  } catch (err) {
    return { kind: 'retry', error: storableText((err as Error).message) };
  }
  return { kind: 'ack', resourceId: claim.resourceId, claim: claim.kind };
}

/** Whether the source already holds a record of the message (a delivery past its limit is acked if so). */
export async function messageClaimed(db: Db, source: string, messageId: string): Promise<boolean> {
  const res = await db.query('SELECT 1 FROM inbox_messages WHERE source = $1 AND message_id = $2', [source, messageId]);
  return (res.rowCount ?? 0) > 0;
}

/** Deletes records past their retention, `batch` rows per statement so no purge holds long locks. Returns how many. */
export async function purgeInbox(db: Db, batch = 1000): Promise<number> {
  let total = 0;
  for (;;) {
    const res = await db.query(
      `DELETE FROM inbox_messages WHERE ctid IN (
         SELECT ctid FROM inbox_messages WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
      [batch],
    );
    total += res.rowCount ?? 0;
    if ((res.rowCount ?? 0) < batch) return total;
  }
}

/**
 * The records' table, defined here and nowhere else: its numbered migrations,
 * applied by migrateInbox (sagaflow's own `migrate` applies them before the
 * order service's tables). Version 1 is safe on a database an older sagaflow
 * built through the service's migration 010: the same table, already there.
 */
export const INBOX_SCHEMA: ModuleSchema = {
  module: 'inbox',
  migrations: [
    {
      version: 1,
      name: 'inbox_messages',
      sql: `
CREATE TABLE IF NOT EXISTS inbox_messages (
  source       text NOT NULL,
  message_id   text NOT NULL,
  fingerprint  text NOT NULL,
  resource_id  text NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  PRIMARY KEY (source, message_id)
);
CREATE INDEX IF NOT EXISTS inbox_messages_expiry_idx ON inbox_messages (expires_at);`,
    },
  ],
};

/** Every migration's SQL in order, for a database whose migrations are run by a tool of your own. */
export const INBOX_DDL = schemaSql(INBOX_SCHEMA);

/** Creates or upgrades the records' table in the first schema of the pool's search path; safe at every start. */
export async function migrateInbox(db: Db): Promise<void> {
  await migrateSchema(db, INBOX_SCHEMA);
}

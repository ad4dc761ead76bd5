import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { inTransaction, quoteIdent, type Db } from '../db';
import { wakeablePause } from '../pause';
import { ensureStream } from '../inbox/jetstream';

/**
 * The transactional outbox, for any table of events: rows written in the transaction of the
 * change they tell of (by a trigger, or by the step that makes the change), published to
 * JetStream as CloudEvents whose ID is their Nats-Msg-Id, then marked published.
 *
 * - At least once, never lost: a row is marked only after the broker acknowledged it; a relay
 *   killed between the two publishes it again (the broker's duplicate window, then the
 *   consumer's inbox, drop the copy).
 * - In order per subject: only the oldest unpublished event of each subject (an order, an
 *   endpoint, a trip) is taken, so its next event waits until the one before it is marked.
 * - Any number of relays: the rows are locked with SKIP LOCKED, so each event is in one relay's
 *   hands at a time.
 */
export interface EventStream {
  stream: string;
  /** Events go to `<prefix>.<type>` (sagaflow.orders.events.completed, ...). */
  subjectPrefix: string;
  replicas?: number;
}

/** A CloudEvents 1.0 event in its JSON format; `type` carries a version (io.sagaflow.order.completed.v1). */
export interface CloudEvent<D = unknown> {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: 'application/json';
  /** The CloudEvents sequence extension: the event's position in the outbox, increasing per subject. */
  sequence: string;
  data: D;
}

/** A table of events the relay publishes from (create it with outboxTableDdl). */
export interface OutboxTable {
  table: string;
  /** The column naming what each event is about: its events go out in order. */
  subjectColumn: string;
  /** The CloudEvents `source`. */
  source: string;
  /** The CloudEvents `type` of a row's `type`, with its version (io.example.trip.booked.v1). */
  typeName(type: string): string;
}

export interface OutboxRow {
  position: string;
  event_id: string;
  subject: string;
  type: string;
  data: unknown;
  occurred_at: Date;
}

/** The DDL of an outbox table: insert (subject, type, data) rows in the transaction of each change. */
export function outboxTableDdl(table: string, subjectColumn = 'subject'): string {
  const t = quoteIdent(table);
  const s = quoteIdent(subjectColumn);
  return `
    CREATE TABLE IF NOT EXISTS ${t} (
      position     bigserial PRIMARY KEY,
      event_id     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
      ${s} text NOT NULL,
      type         text NOT NULL,
      data         jsonb NOT NULL,
      occurred_at  timestamptz NOT NULL DEFAULT now(),
      published_at timestamptz
    );
    CREATE INDEX IF NOT EXISTS ${quoteIdent(`${table}_unpublished_idx`)} ON ${t} (${s}, position) WHERE published_at IS NULL;
    CREATE INDEX IF NOT EXISTS ${quoteIdent(`${table}_published_idx`)} ON ${t} (published_at) WHERE published_at IS NOT NULL;`;
}

export function toCloudEvent(row: OutboxRow, outbox: OutboxTable): CloudEvent {
  return {
    specversion: '1.0',
    id: row.event_id,
    source: outbox.source,
    type: outbox.typeName(row.type),
    subject: row.subject,
    time: row.occurred_at.toISOString(),
    datacontenttype: 'application/json',
    sequence: String(row.position),
    data: row.data,
  };
}

/** The stream holding `<prefix>.>`, created if missing. */
export async function ensureEventStream(nc: NatsConnection, s: EventStream): Promise<void> {
  await ensureStream(await jetstreamManager(nc), s.stream, [`${s.subjectPrefix}.>`], s.replicas ?? 1);
}

/**
 * Publishes one batch: the oldest unpublished event of up to `batch` subjects, at once, then
 * marks them in the same transaction that locked them. Returns the type of each event published.
 */
export async function relayOutboxOnce(db: Db, js: JetStreamClient, outbox: OutboxTable, s: EventStream, batch = 100): Promise<string[]> {
  const table = quoteIdent(outbox.table);
  const subject = quoteIdent(outbox.subjectColumn);
  return inTransaction(db, async (tx) => {
    const { rows } = await tx.query<OutboxRow>(
      `SELECT e.position, e.event_id, e.${subject} AS subject, e.type, e.data, e.occurred_at
         FROM ${table} e
        WHERE e.published_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM ${table} p
                           WHERE p.${subject} = e.${subject} AND p.published_at IS NULL AND p.position < e.position)
        ORDER BY e.position
        LIMIT $1
        FOR UPDATE SKIP LOCKED`,
      [batch],
    );
    if (!rows.length) return [];
    await Promise.all(
      rows.map((r) => {
        const h = natsHeaders();
        h.set('Content-Type', 'application/cloudevents+json');
        return js.publish(`${s.subjectPrefix}.${r.type}`, JSON.stringify(toCloudEvent(r, outbox)), { msgID: r.event_id, headers: h });
      }),
    );
    await tx.query(`UPDATE ${table} SET published_at = now() WHERE position = ANY($1::bigint[])`, [rows.map((r) => r.position)]);
    return rows.map((r) => r.type);
  });
}

/** Deletes published events older than `retentionMs`, `batch` rows per statement. Returns how many. */
export async function purgePublished(db: Db, outbox: Pick<OutboxTable, 'table'>, retentionMs: number, batch = 1000): Promise<number> {
  const table = quoteIdent(outbox.table);
  let total = 0;
  for (;;) {
    const res = await db.query(
      `DELETE FROM ${table} WHERE position IN (
         SELECT position FROM ${table}
          WHERE published_at IS NOT NULL AND published_at < now() - $1 * interval '1 ms'
          LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [retentionMs, batch],
    );
    total += res.rowCount ?? 0;
    if ((res.rowCount ?? 0) < batch) return total;
  }
}

/** Events written and not yet published, and the age of the oldest (the relay's lag). */
export async function outboxLag(db: Db, outbox: Pick<OutboxTable, 'table'>): Promise<{ unpublished: number; oldestMs: number }> {
  const { rows } = await db.query<{ n: string; age_ms: number | null }>(
    `SELECT count(*) AS n, (extract(epoch FROM now() - min(occurred_at)) * 1000)::int AS age_ms
       FROM ${quoteIdent(outbox.table)} WHERE published_at IS NULL`,
  );
  return { unpublished: Number(rows[0]?.n ?? 0), oldestMs: rows[0]?.age_ms ?? 0 };
}

export interface RunningRelay {
  stop(): Promise<void>;
  done: Promise<void>;
}

/**
 * Relays until stopped: a batch of each table in turn while there are events, then a short wait
 * (`idleMs`, 200 ms by default). A failure (PostgreSQL or NATS away) is reported and retried after
 * a second; nothing is marked that was not acknowledged.
 */
export function runOutboxRelay(opts: {
  db: Db;
  nc: NatsConnection;
  outboxes: { outbox: OutboxTable; stream: EventStream }[];
  batch?: number;
  idleMs?: number;
  onError?: (err: Error) => void;
  /** After each batch is marked: its table and the type of each event in it. */
  onPublished?: (table: string, types: string[]) => void;
}): RunningRelay {
  const js = jetstream(opts.nc);
  let stopping = false;
  const { pause, wake } = wakeablePause();
  const done = (async () => {
    while (!stopping) {
      try {
        let published = 0;
        for (const { outbox, stream } of opts.outboxes) {
          const types = await relayOutboxOnce(opts.db, js, outbox, stream, opts.batch);
          if (types.length) opts.onPublished?.(outbox.table, types);
          published += types.length;
        }
        if (!published) await pause(opts.idleMs ?? 200);
      } catch (err) {
        opts.onError?.(err as Error);
        if (!stopping) await pause(1000);
      }
    }
  })();
  return {
    done,
    async stop() {
      stopping = true;
      wake();
      await done;
    },
  };
}

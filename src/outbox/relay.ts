import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { inTransaction, type Db } from '../db/pool';
import { wakeablePause } from '../pause';
import { ensureStream } from '../inbox/jetstream';

/**
 * The outbox relay: publishes the rows of `order_events` (written by a trigger in
 * the transaction of every order change, migration 011) to JetStream as
 * CloudEvents, the event ID as Nats-Msg-Id, then marks them published.
 *
 * - At least once, never lost: a row is marked only after the broker acknowledged
 *   it; a relay killed between the two publishes it again (the broker's duplicate
 *   window, then the consumer's inbox, drop the copy).
 * - In order per order: only the oldest unpublished event of each order is taken,
 *   so an order's next event waits until the one before it is marked.
 * - Any number of relays: the rows are locked with SKIP LOCKED, so each event is in
 *   one relay's hands at a time.
 */
export interface EventStream {
  stream: string;
  /** Events go to `<prefix>.<type>` (sagaflow.orders.events.completed, ...). */
  subjectPrefix: string;
  replicas?: number;
}

export const ORDER_EVENTS: EventStream = { stream: 'SAGAFLOW_ORDER_EVENTS', subjectPrefix: 'sagaflow.orders.events' };

/** The CloudEvents `source` of every order event. */
export const EVENT_SOURCE = 'sagaflow/orders';

export type OrderEventType = 'created' | 'completed' | 'cancelled' | 'compensated' | 'failed' | 'compensation_failed';

/** A CloudEvents 1.0 event in its JSON format; `type` carries a version (io.sagaflow.order.completed.v1). */
export interface CloudEvent<D = unknown> {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: 'application/json';
  /** The CloudEvents sequence extension: the event's position in the outbox, increasing per order. */
  sequence: string;
  data: D;
}

interface EventRow {
  position: string;
  event_id: string;
  order_id: string;
  type: OrderEventType;
  data: unknown;
  occurred_at: Date;
}

export const eventTypeName = (type: OrderEventType): string => `io.sagaflow.order.${type}.v1`;

export function toCloudEvent(row: EventRow): CloudEvent {
  return {
    specversion: '1.0',
    id: row.event_id,
    source: EVENT_SOURCE,
    type: eventTypeName(row.type),
    subject: row.order_id,
    time: row.occurred_at.toISOString(),
    datacontenttype: 'application/json',
    sequence: String(row.position),
    data: row.data,
  };
}

export async function ensureEventStream(nc: NatsConnection, s: EventStream = ORDER_EVENTS): Promise<void> {
  await ensureStream(await jetstreamManager(nc), s.stream, [`${s.subjectPrefix}.>`], s.replicas ?? 1);
}

/**
 * Publishes one batch: the oldest unpublished event of up to `batch` orders, at once,
 * then marks them in the same transaction that locked them. Returns how many.
 */
export async function relayOnce(db: Db, js: JetStreamClient, opts: { stream?: EventStream; batch?: number } = {}): Promise<number> {
  return (await relayBatch(db, js, opts)).length;
}

/** relayOnce, answering the type of each event it published (for the metrics). */
async function relayBatch(db: Db, js: JetStreamClient, opts: { stream?: EventStream; batch?: number }): Promise<OrderEventType[]> {
  const s = opts.stream ?? ORDER_EVENTS;
  return inTransaction(db, async (tx) => {
    const { rows } = await tx.query<EventRow>(
      `SELECT e.position, e.event_id, e.order_id, e.type, e.data, e.occurred_at
         FROM order_events e
        WHERE e.published_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM order_events p
                           WHERE p.order_id = e.order_id AND p.published_at IS NULL AND p.position < e.position)
        ORDER BY e.position
        LIMIT $1
        FOR UPDATE SKIP LOCKED`,
      [opts.batch ?? 100],
    );
    if (!rows.length) return [];
    await Promise.all(
      rows.map((r) => {
        const h = natsHeaders();
        h.set('Content-Type', 'application/cloudevents+json');
        return js.publish(`${s.subjectPrefix}.${r.type}`, JSON.stringify(toCloudEvent(r)), { msgID: r.event_id, headers: h });
      }),
    );
    await tx.query('UPDATE order_events SET published_at = now() WHERE position = ANY($1::bigint[])', [rows.map((r) => r.position)]);
    return rows.map((r) => r.type);
  });
}

/** Deletes published events older than `retentionMs`, `batch` rows per statement. Returns how many. */
export async function purgePublishedEvents(db: Db, retentionMs: number, batch = 1000): Promise<number> {
  let total = 0;
  for (;;) {
    const res = await db.query(
      `DELETE FROM order_events WHERE position IN (
         SELECT position FROM order_events
          WHERE published_at IS NOT NULL AND published_at < now() - $1 * interval '1 ms'
          LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [retentionMs, batch],
    );
    total += res.rowCount ?? 0;
    if ((res.rowCount ?? 0) < batch) return total;
  }
}

/** Events written and not yet published, and the age of the oldest (the relay's lag). */
export async function relayLag(db: Db): Promise<{ unpublished: number; oldestMs: number }> {
  const { rows } = await db.query<{ n: string; age_ms: number | null }>(
    `SELECT count(*) AS n, (extract(epoch FROM now() - min(occurred_at)) * 1000)::int AS age_ms
       FROM order_events WHERE published_at IS NULL`,
  );
  return { unpublished: Number(rows[0]?.n ?? 0), oldestMs: rows[0]?.age_ms ?? 0 };
}

export interface RunningRelay {
  stop(): Promise<void>;
  done: Promise<void>;
}

/**
 * Relays until stopped: batch after batch while there are events, then a short wait
 * (`idleMs`, 200 ms by default). A failure (PostgreSQL or NATS away) is reported and
 * retried after a second; nothing is marked that was not acknowledged.
 */
export function runRelay(opts: {
  db: Db;
  nc: NatsConnection;
  stream?: EventStream;
  batch?: number;
  idleMs?: number;
  onError?: (err: Error) => void;
  /** After each batch is marked: the type of each event in it. */
  onPublished?: (types: OrderEventType[]) => void;
}): RunningRelay {
  const js = jetstream(opts.nc);
  let stopping = false;
  const { pause, wake } = wakeablePause();
  const done = (async () => {
    while (!stopping) {
      try {
        const types = await relayBatch(opts.db, js, opts);
        if (types.length) opts.onPublished?.(types);
        else await pause(opts.idleMs ?? 200);
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

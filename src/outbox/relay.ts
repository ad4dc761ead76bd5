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
  /** What the event is about (an order ID, an endpoint ID): its events go out in order. */
  subject: string;
  type: string;
  data: unknown;
  occurred_at: Date;
}

/**
 * A table the relay publishes from: rows written by a trigger in the transaction of the change
 * (position, event_id, type, data, occurred_at, published_at, and the column naming what each
 * event is about).
 */
interface OutboxTable {
  table: string;
  subjectColumn: string;
  source: string;
  typeName(type: string): string;
}

export const eventTypeName = (type: OrderEventType): string => `io.sagaflow.order.${type}.v1`;

const ORDER_OUTBOX: OutboxTable = {
  table: 'order_events',
  subjectColumn: 'order_id',
  source: EVENT_SOURCE,
  typeName: (type) => eventTypeName(type as OrderEventType),
};

/**
 * A webhook endpoint disabled after its attempts kept failing, or enabled again (migration 014):
 * io.sagaflow.webhook_endpoint.disabled.v1 on `sagaflow.webhooks.events.disabled`, the endpoint
 * as its subject.
 */
export const ENDPOINT_EVENTS: EventStream = { stream: 'SAGAFLOW_WEBHOOK_EVENTS', subjectPrefix: 'sagaflow.webhooks.events' };
const ENDPOINT_OUTBOX: OutboxTable = {
  table: 'webhook_endpoint_events',
  subjectColumn: 'endpoint_id',
  source: 'sagaflow/webhooks',
  typeName: (type) => `io.sagaflow.webhook_endpoint.${type}.v1`,
};

export function toCloudEvent(row: EventRow, outbox: OutboxTable = ORDER_OUTBOX): CloudEvent {
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
  return (await relayTable(db, js, ORDER_OUTBOX, opts.stream ?? ORDER_EVENTS, opts.batch ?? 100)) as OrderEventType[];
}

/** relayOnce for the webhook endpoints' events (to ENDPOINT_EVENTS unless told otherwise). */
export async function relayEndpointEventsOnce(db: Db, js: JetStreamClient, opts: { stream?: EventStream; batch?: number } = {}): Promise<number> {
  return (await relayTable(db, js, ENDPOINT_OUTBOX, opts.stream ?? ENDPOINT_EVENTS, opts.batch ?? 100)).length;
}

async function relayTable(db: Db, js: JetStreamClient, outbox: OutboxTable, s: EventStream, batch: number): Promise<string[]> {
  const { table, subjectColumn: subject } = outbox;
  return inTransaction(db, async (tx) => {
    const { rows } = await tx.query<EventRow>(
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
export async function purgePublishedEvents(db: Db, retentionMs: number, batch = 1000): Promise<number> {
  let total = 0;
  for (const { table } of [ORDER_OUTBOX, ENDPOINT_OUTBOX]) {
    for (;;) {
      const res = await db.query(
        `DELETE FROM ${table} WHERE position IN (
           SELECT position FROM ${table}
            WHERE published_at IS NOT NULL AND published_at < now() - $1 * interval '1 ms'
            LIMIT $2 FOR UPDATE SKIP LOCKED)`,
        [retentionMs, batch],
      );
      total += res.rowCount ?? 0;
      if ((res.rowCount ?? 0) < batch) break;
    }
  }
  return total;
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
  /** Also publish the webhook endpoints' events, to this stream. */
  endpointEvents?: EventStream;
}): RunningRelay {
  const js = jetstream(opts.nc);
  let stopping = false;
  const { pause, wake } = wakeablePause();
  const done = (async () => {
    while (!stopping) {
      try {
        const types = await relayBatch(opts.db, js, opts);
        if (types.length) opts.onPublished?.(types);
        const endpoints = opts.endpointEvents ? await relayEndpointEventsOnce(opts.db, js, { stream: opts.endpointEvents }) : 0;
        if (!types.length && !endpoints) await pause(opts.idleMs ?? 200);
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

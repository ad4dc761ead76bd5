import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Db } from '../db/pool';
import {
  ensureEventStream as ensureStreamOf,
  outboxLag,
  purgePublished,
  relayOutboxOnce,
  runOutboxRelay,
  toCloudEvent as toCloudEventOf,
  type CloudEvent,
  type EventStream,
  type OutboxRow,
  type OutboxTable,
  type RunningRelay,
} from '@sagaflow/toolkit/outbox';

/**
 * sagaflow's own outboxes on the toolkit's generic relay (@sagaflow/toolkit/outbox): the rows of `order_events`
 * (written by a trigger in the transaction of every order change, migrations 011 and 013) and of
 * `webhook_endpoint_events` (migration 014).
 */
export type { CloudEvent, EventStream, RunningRelay };

export const ORDER_EVENTS: EventStream = { stream: 'SAGAFLOW_ORDER_EVENTS', subjectPrefix: 'sagaflow.orders.events' };

/** The CloudEvents `source` of every order event. */
export const EVENT_SOURCE = 'sagaflow/orders';

export type OrderEventType = 'created' | 'completed' | 'cancelled' | 'compensated' | 'failed' | 'compensation_failed';

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

/** An order event as the CloudEvent the relay publishes (and a webhook delivers). */
export const toCloudEvent = (row: OutboxRow): CloudEvent => toCloudEventOf(row, ORDER_OUTBOX);

export const ensureEventStream = (nc: NatsConnection, s: EventStream = ORDER_EVENTS): Promise<void> => ensureStreamOf(nc, s);

/**
 * Publishes one batch: the oldest unpublished event of up to `batch` orders, at once,
 * then marks them in the same transaction that locked them. Returns how many.
 */
export async function relayOnce(db: Db, js: JetStreamClient, opts: { stream?: EventStream; batch?: number } = {}): Promise<number> {
  return (await relayOutboxOnce(db, js, ORDER_OUTBOX, opts.stream ?? ORDER_EVENTS, opts.batch)).length;
}

/** relayOnce for the webhook endpoints' events (to ENDPOINT_EVENTS unless told otherwise). */
export async function relayEndpointEventsOnce(db: Db, js: JetStreamClient, opts: { stream?: EventStream; batch?: number } = {}): Promise<number> {
  return (await relayOutboxOnce(db, js, ENDPOINT_OUTBOX, opts.stream ?? ENDPOINT_EVENTS, opts.batch)).length;
}

/** Deletes published order and endpoint events older than `retentionMs`, in batches. Returns how many. */
export async function purgePublishedEvents(db: Db, retentionMs: number, batch = 1000): Promise<number> {
  return (await purgePublished(db, ORDER_OUTBOX, retentionMs, batch)) + (await purgePublished(db, ENDPOINT_OUTBOX, retentionMs, batch));
}

/** Order events written and not yet published, and the age of the oldest (the relay's lag). */
export const relayLag = (db: Db): Promise<{ unpublished: number; oldestMs: number }> => outboxLag(db, ORDER_OUTBOX);

/** Relays order events (and, given a stream, the webhook endpoints' events) until stopped. */
export function runRelay(opts: {
  db: Db;
  nc: NatsConnection;
  stream?: EventStream;
  batch?: number;
  idleMs?: number;
  onError?: (err: Error) => void;
  /** After each batch of order events is marked: the type of each event in it. */
  onPublished?: (types: OrderEventType[]) => void;
  /** Also publish the webhook endpoints' events, to this stream. */
  endpointEvents?: EventStream;
}): RunningRelay {
  const { onPublished } = opts;
  return runOutboxRelay({
    ...opts,
    outboxes: [
      { outbox: ORDER_OUTBOX, stream: opts.stream ?? ORDER_EVENTS },
      ...(opts.endpointEvents ? [{ outbox: ENDPOINT_OUTBOX, stream: opts.endpointEvents }] : []),
    ],
    onPublished: onPublished && ((table, types) => table === ORDER_OUTBOX.table && onPublished(types as OrderEventType[])),
  });
}

import type { InboxTopology } from '@sagaflow/toolkit/inbox';

/**
 * Names the soak's stream doors share between the driver and the consumer process
 * (dev/chaos/event-consumers.ts), kept apart so the driver never loads `sagaflow/inbox`
 * through the package's own name.
 */

/** The inbox source of the soak's counting consumer, and its table of events applied. */
export const EVENT_COUNTER_SOURCE = 'chaos-event-counter';

export const EVENTS_SEEN_DDL = `
CREATE TABLE IF NOT EXISTS chaos_events_seen (
  id        text PRIMARY KEY,
  event_id  text NOT NULL,
  type      text NOT NULL,
  order_id  text NOT NULL,
  sequence  bigint NOT NULL,
  seen_at   timestamptz NOT NULL DEFAULT now()
);`;

/** io.sagaflow.order.<type>.v1; the first group is the short type (created, completed, ...). */
export const EVENT_TYPE = /^io\.sagaflow\.order\.([a-z_]+)\.v1$/;

/** The example projection's dead letters (examples/shipping-notifications, notificationsTopology). */
export const NOTIFICATIONS_DEAD_LETTER_STREAM = 'SHIPPING_NOTIFICATIONS_DLQ';

/** The counting consumer: every subject of the order events stream. */
export function eventCounterTopology(): InboxTopology {
  return {
    stream: 'SAGAFLOW_ORDER_EVENTS',
    subjects: ['sagaflow.orders.events.>'],
    consumer: 'chaos-event-counter',
    deadLetterStream: 'CHAOS_EVENT_COUNTER_DLQ',
    deadLetterSubject: 'chaos-event-counter.dead-letter',
    maxDeliver: 10,
    maxAckPending: 256,
    ackWaitMs: 30_000,
  };
}

/**
 * The broker's duplicate window on the order intake's stream in the soak: short, so
 * the repeated publishes the traffic sends long after it (see traffic.ts) are stored
 * again by the broker, and only the intake's inbox stands between them and a second order.
 */
export const ORDER_STREAM_DUPLICATE_WINDOW_MS = 5_000;

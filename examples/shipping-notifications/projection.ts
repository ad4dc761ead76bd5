/**
 * A consumer of sagaflow's order events: a shipping-notification projection. Each
 * `io.sagaflow.order.completed.v1` event becomes one notification row, applied
 * exactly once with @sagaflow/toolkit/inbox: the event's ID (its Nats-Msg-Id) is claimed in
 * the transaction that writes the row, so a redelivery, or the relay publishing
 * the same event again after a crash, notifies nobody twice. The table has no
 * unique constraint of its own on purpose: only the inbox stands between a
 * duplicate and a second row.
 */
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  ensureInboxTopology,
  fingerprint,
  InvalidMessage,
  migrateInbox,
  runJetStreamInbox,
  type Db,
  type InboxHandler,
  type InboxTopology,
  type RunningInbox,
} from '@sagaflow/toolkit/inbox';

export const NOTIFICATIONS_DDL = `
CREATE TABLE IF NOT EXISTS shipping_notifications (
  id          text PRIMARY KEY,
  order_id    text NOT NULL,
  customer_id text NOT NULL,
  event_id    text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);`;

interface CompletedEvent {
  id: string;
  type: string;
  subject: string;
  data: { orderId: string; customerId: string };
}

export const notificationsHandler: InboxHandler<CompletedEvent> = {
  source: 'shipping-notifications',
  parse(body) {
    let event: CompletedEvent;
    try {
      event = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body)) as CompletedEvent;
    } catch {
      throw new InvalidMessage('not a JSON CloudEvent');
    }
    if (event?.type !== 'io.sagaflow.order.completed.v1' || typeof event.data?.customerId !== 'string') {
      throw new InvalidMessage(`not an order.completed v1 event: ${String(event?.type)}`);
    }
    return { payload: event, fingerprint: fingerprint(event), messageId: event.id };
  },
  newResourceId: () => `ntf_${randomUUID()}`,
  async apply(tx, event, id) {
    await tx.query('INSERT INTO shipping_notifications (id, order_id, customer_id, event_id) VALUES ($1, $2, $3, $4)', [
      id,
      event.subject,
      event.data.customerId,
      event.id,
    ]);
  },
};

/** The projection's consumer on the order events stream: completed orders only. */
export function notificationsTopology(overrides: Partial<InboxTopology> = {}): InboxTopology {
  return {
    stream: 'SAGAFLOW_ORDER_EVENTS',
    subjects: ['sagaflow.orders.events.>'],
    filterSubject: 'sagaflow.orders.events.completed',
    consumer: 'shipping-notifications',
    deadLetterStream: 'SHIPPING_NOTIFICATIONS_DLQ',
    deadLetterSubject: 'shipping-notifications.dead-letter',
    maxDeliver: 10,
    maxAckPending: 256,
    ackWaitMs: 30_000,
    ...overrides,
  };
}

export async function startNotifications(nc: NatsConnection, db: Db, topology = notificationsTopology()): Promise<RunningInbox> {
  await migrateInbox(db);
  await db.query(NOTIFICATIONS_DDL);
  await ensureInboxTopology(nc, topology);
  return runJetStreamInbox({ nc, db, handler: notificationsHandler, topology, retentionMs: 30 * 86_400_000 });
}

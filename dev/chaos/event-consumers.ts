import { randomUUID } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import {
  ensureInboxTopology,
  fingerprint,
  InvalidMessage,
  migrateInbox,
  runJetStreamInbox,
  type InboxHandler,
  type InboxOutcome,
} from '@sagaflow/toolkit/inbox';
import { notificationsTopology, startNotifications } from '../../examples/shipping-notifications/projection';
import { runMain } from '../../src/run-main';
import { loadConfig } from '../../src/config';
import { migratePatiently } from '../../src/db/migrate';
import { createPool } from '../../src/db/pool';
import { EVENT_COUNTER_SOURCE, EVENT_TYPE, EVENTS_SEEN_DDL, eventCounterTopology } from './doors';

/**
 * `event-consumers.ts`: the soak's consumers of the order events, as a process of its
 * own (the chaos stack starts it with DATABASE_URL and NATS_URL, and Node's
 * `--conditions=sagaflow-source`, so `sagaflow/inbox` is this repository's source):
 *
 * - the example projection (examples/shipping-notifications), as it ships: each
 *   completed order's event becomes one shipping notification, applied once through
 *   sagaflow/inbox;
 * - a counting consumer of every event type, built the same way on sagaflow/inbox: each
 *   event it applies is one row of `chaos_events_seen`, claimed in the inbox in the same
 *   transaction, so the audit can say that every event was seen exactly once after the
 *   dedupe. The table has no unique constraint on the event on purpose: only the inbox
 *   stands between a redelivery (or the relay publishing an event again) and a second row.
 *
 * Every delivery's outcome is printed as one JSON line (`"msg":"event outcome"`), so the
 * driver can count what the dedupe dropped.
 */
interface AnyOrderEvent {
  id: string;
  type: string;
  subject: string;
  sequence: string;
}

const eventCounterHandler: InboxHandler<AnyOrderEvent> = {
  source: EVENT_COUNTER_SOURCE,
  parse(body) {
    let event: AnyOrderEvent;
    try {
      event = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body)) as AnyOrderEvent;
    } catch {
      throw new InvalidMessage('not a JSON CloudEvent');
    }
    if (typeof event?.id !== 'string' || !EVENT_TYPE.test(String(event.type)) || typeof event.subject !== 'string') {
      throw new InvalidMessage(`not an order event: ${String(event?.type)}`);
    }
    return { payload: event, fingerprint: fingerprint(event), messageId: event.id };
  },
  newResourceId: () => `seen_${randomUUID()}`,
  async apply(tx, event, id) {
    await tx.query('INSERT INTO chaos_events_seen (id, event_id, type, order_id, sequence) VALUES ($1, $2, $3, $4, $5)', [
      id,
      event.id,
      EVENT_TYPE.exec(event.type)![1],
      event.subject,
      event.sequence,
    ]);
  },
};

runMain("usage: event-consumers.ts  (the soak's consumers of the order events; needs DATABASE_URL and NATS_URL)", async () => {
  const config = loadConfig();
  if (!config.DATABASE_URL || !config.NATS_URL) throw new Error('DATABASE_URL and NATS_URL are required');
  await migratePatiently(config.DATABASE_URL, { log: () => undefined });
  const db = createPool({ connectionString: config.DATABASE_URL, max: 4 });
  const nc = await connect({ servers: config.NATS_URL.split(','), name: 'sagaflow-chaos-consumers', maxReconnectAttempts: -1, waitOnFirstConnect: true });
  const report = (consumer: string) => (o: InboxOutcome) => {
    const claim = o.kind === 'ack' ? o.claim : undefined;
    const detail = o.kind === 'retry' ? o.error : o.kind === 'dead-letter' ? `${o.reason}: ${o.detail}` : undefined;
    console.log(JSON.stringify({ msg: 'event outcome', consumer, kind: o.kind, claim, deliveries: o.deliveries, messageId: o.messageId, detail }));
  };
  await migrateInbox(db);
  await db.query(EVENTS_SEEN_DDL);
  const counterTopology = eventCounterTopology();
  await ensureInboxTopology(nc, counterTopology);
  const counter = await runJetStreamInbox({
    nc,
    db,
    handler: eventCounterHandler,
    topology: counterTopology,
    retentionMs: 86_400_000,
    onOutcome: report('counter'),
  });
  // The example exactly as it ships: its own consumer, dead-letter stream and inbox source.
  const notifications = await startNotifications(nc, db, notificationsTopology());
  console.log(JSON.stringify({ msg: 'consumers running', pid: process.pid }));
  const ended = (which: string) => () => console.log(JSON.stringify({ msg: `${which} consumer ended` }));
  await Promise.race([
    new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    }),
    counter.done.then(ended('counter'), ended('counter')),
    notifications.done.then(ended('notifications'), ended('notifications')),
  ]);
  await Promise.all([counter.stop(), notifications.stop()]);
  await nc.drain().catch(() => undefined);
  await db.end();
  return 0;
});

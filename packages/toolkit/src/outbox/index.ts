/**
 * sagaflow/outbox: the transactional outbox for any saga's events. Write each event in the
 * transaction of the change it tells of, into a table made with outboxTableDdl; a relay
 * (runOutboxRelay) publishes the rows to JetStream as CloudEvents, in order per subject, at least
 * once, the event ID as Nats-Msg-Id; consumers apply each once with sagaflow/inbox.
 */
export {
  ensureEventStream,
  outboxLag,
  outboxTableDdl,
  purgePublished,
  relayOutboxOnce,
  runOutboxRelay,
  toCloudEvent,
  type CloudEvent,
  type EventStream,
  type OutboxRow,
  type OutboxTable,
  type RunningRelay,
} from './outbox';
export type { Db, Tx } from '../db';
export { wakeablePause } from '../pause';

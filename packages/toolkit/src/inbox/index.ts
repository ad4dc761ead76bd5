/**
 * sagaflow/inbox: idempotent message processing for any handler and any saga.
 * Claim the message's ID in the transaction that applies its effect, do the
 * after-commit work (start a saga by its deterministic ID), then ack; see
 * ./inbox.ts. ./jetstream.ts runs it on a NATS JetStream durable pull consumer
 * with dead letters and their requeue, as sagaflow/edge does for HTTP.
 */
export {
  claimMessage,
  INBOX_DDL,
  INBOX_SCHEMA,
  InvalidMessage,
  messageClaimed,
  messageIdProblem,
  migrateInbox,
  processMessage,
  purgeInbox,
  type DeadLetterReason,
  type InboxClaim,
  type InboxClaimRequest,
  type InboxHandler,
  type InboxMessage,
  type InboxVerdict,
} from './inbox';
export {
  DeadLetterHeaders,
  defaultBackoffMs,
  ensureInboxTopology,
  inboxBacklog,
  listDeadLetters,
  requeueDeadLetter,
  runJetStreamInbox,
  type DeadLetter,
  type InboxOutcome,
  type InboxRunOptions,
  type InboxTopology,
  type RunningInbox,
} from './jetstream';
export { fingerprint } from '../ledger/fingerprint';
export type { Db, Tx } from '../db';

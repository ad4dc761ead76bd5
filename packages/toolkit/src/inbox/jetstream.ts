import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders, nanos, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import type { Db } from '../db';
import { messageClaimed, processMessage, type InboxHandler, type InboxVerdict } from './inbox';

/**
 * The inbox on NATS JetStream: a durable pull consumer whose every message is
 * processed by processMessage and then acked (only after the commit), redelivered
 * later with backoff (nak with a delay), or dead-lettered to a stream of its own with
 * the reason and then terminated. A poison message is dead-lettered at once and never
 * holds back the ones behind it; `maxAckPending` bounds what is in flight.
 */
export interface InboxTopology {
  /** The stream the messages arrive on, and its subjects. */
  stream: string;
  subjects: string[];
  /** The durable pull consumer's name. */
  consumer: string;
  /** Only the messages on this subject (a stream shared with other consumers). */
  filterSubject?: string;
  deadLetterStream: string;
  deadLetterSubject: string;
  /** Deliveries before a message that keeps failing is dead-lettered with its last error. */
  maxDeliver: number;
  maxAckPending: number;
  /** How long a delivery may go unacknowledged before the server redelivers it (a crashed consumer's). */
  ackWaitMs: number;
  /** Copies of each stream in a JetStream cluster (1 on a single server). */
  replicas?: number;
  /**
   * The broker's own duplicate window on the stream (its default is two minutes). The inbox
   * dedupes for far longer; the window only spares it the work of a quick producer retry.
   */
  duplicateWindowMs?: number;
}

/** The headers a dead letter carries besides the original message's own. */
export const DeadLetterHeaders = {
  reason: 'Sagaflow-Dead-Letter-Reason',
  detail: 'Sagaflow-Dead-Letter-Detail',
  deliveries: 'Sagaflow-Delivery-Count',
  subject: 'Sagaflow-Original-Subject',
  stream: 'Sagaflow-Original-Stream',
  sequence: 'Sagaflow-Original-Sequence',
  /** The message's own ID, kept apart from Nats-Msg-Id, which the broker dedupes on. */
  messageId: 'Sagaflow-Msg-Id',
} as const;

/** Creates the streams and the consumer, or brings their settings up to date. */
export async function ensureInboxTopology(nc: NatsConnection, t: InboxTopology): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, t.stream, t.subjects, t.replicas ?? 1, t.duplicateWindowMs);
  await ensureStream(jsm, t.deadLetterStream, [t.deadLetterSubject], t.replicas ?? 1);
  const config = {
    durable_name: t.consumer,
    ack_policy: AckPolicy.Explicit,
    // The consumer decides when a message has been tried enough (and dead-letters it with its error):
    // the server never drops a message on its own.
    max_deliver: -1,
    max_ack_pending: t.maxAckPending,
    ack_wait: nanos(t.ackWaitMs),
    ...(t.filterSubject ? { filter_subject: t.filterSubject } : {}),
  };
  let exists = true;
  try {
    await jsm.consumers.info(t.stream, t.consumer);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    exists = false;
  }
  if (exists) await jsm.consumers.update(t.stream, t.consumer, { max_ack_pending: config.max_ack_pending, ack_wait: config.ack_wait, max_deliver: -1 });
  else await jsm.consumers.add(t.stream, config);
}

/** Creates the stream, or brings its subjects, replicas and duplicate window up to date. */
export async function ensureStream(jsm: JetStreamManager, name: string, subjects: string[], replicas: number, duplicateWindowMs?: number): Promise<void> {
  const config = { subjects, num_replicas: replicas, ...(duplicateWindowMs ? { duplicate_window: nanos(duplicateWindowMs) } : {}) };
  let exists = true;
  try {
    await jsm.streams.info(name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    exists = false;
  }
  if (exists) await jsm.streams.update(name, config);
  else await jsm.streams.add({ name, ...config });
}

const isNotFound = (err: unknown): boolean => /not found/i.test((err as Error)?.message ?? '');

/** The wait before delivery n + 1 of a message that failed n times: 1 s doubling, at most 60 s. */
export const defaultBackoffMs = (deliveries: number): number => Math.min(60_000, 1000 * 2 ** Math.min(deliveries - 1, 16));

export interface InboxRunOptions<P> {
  nc: NatsConnection;
  db: Db;
  handler: InboxHandler<P>;
  topology: InboxTopology;
  retentionMs: number;
  /** Messages processed at once (default 8). */
  concurrency?: number;
  backoffMs?: (deliveries: number) => number;
  /** Each message's outcome, once the broker was told (for metrics and logs). */
  onOutcome?: (outcome: InboxOutcome) => void;
  /**
   * The stream or the consumer went missing (a NATS server back with an empty store, a stream
   * deleted by hand): told before the topology is created again and consuming resumes.
   */
  onTopologyLost?: (err: Error) => void;
}

export type InboxOutcome = InboxVerdict & { stream: string; sequence: number; deliveries: number; messageId?: string };

export interface RunningInbox {
  /** Stops taking messages and waits for those in hand; the rest are redelivered after their ack wait. */
  stop(): Promise<void>;
  /** Settles when the consumer ends (by stop() or a failure of the subscription). */
  done: Promise<void>;
  /** Messages in hand now. */
  readonly inFlight: number;
}

export async function runJetStreamInbox<P>(opts: InboxRunOptions<P>): Promise<RunningInbox> {
  const { topology: t } = opts;
  const js = jetstream(opts.nc);
  const concurrency = Math.max(1, opts.concurrency ?? 8);
  // Stopped (the iterator ends with the error) when the stream or the consumer is missing: the
  // library's default would wait for someone else to create them again, consuming nothing meanwhile.
  const consume = async () =>
    (await js.consumers.get(t.stream, t.consumer)).consume({
      max_messages: Math.min(t.maxAckPending, concurrency * 2),
      abort_on_missing_resource: true,
    });
  let messages = await consume();
  let stopping = false;
  const inHand = new Set<Promise<void>>();

  const settle = async (m: JsMsg): Promise<void> => {
    const deliveries = m.info.deliveryCount;
    const messageId = headerValue(m.headers, DeadLetterHeaders.messageId) ?? headerValue(m.headers, 'Nats-Msg-Id');
    const keepAlive = setInterval(() => m.working(), Math.max(200, Math.floor(t.ackWaitMs / 3)));
    let verdict: InboxVerdict;
    try {
      if (deliveries > t.maxDeliver + 1) {
        // Every earlier delivery ended with no outcome (the process died while holding it): stop here.
        // A message that did commit its record is done; the order's recovery job covers what followed.
        verdict =
          messageId && (await messageClaimed(opts.db, opts.handler.source, messageId).catch(() => false))
            ? { kind: 'ack', resourceId: '', claim: 'duplicate' }
            : { kind: 'dead-letter', reason: 'exhausted', detail: `delivered ${deliveries} times without an outcome` };
      } else {
        verdict = await processMessage(opts.db, opts.handler, { messageId, body: m.data }, opts.retentionMs);
      }
      if (verdict.kind === 'retry' && deliveries >= t.maxDeliver) {
        verdict = { kind: 'dead-letter', reason: 'exhausted', detail: `failed ${deliveries} deliveries; the last: ${verdict.error}` };
      }
      if (verdict.kind === 'ack') await m.ackAck();
      else if (verdict.kind === 'retry') m.nak((opts.backoffMs ?? defaultBackoffMs)(deliveries));
      else {
        await deadLetter(js, m, t, verdict.reason, verdict.detail, messageId);
        m.term();
      }
    } catch (err) {
      // The broker could not be told (a lost connection, the dead-letter stream unreachable):
      // the message is redelivered after its ack wait and finds its record then.
      verdict = { kind: 'retry', error: (err as Error).message };
    } finally {
      clearInterval(keepAlive);
    }
    opts.onOutcome?.({ ...verdict, stream: t.stream, sequence: m.seq, deliveries, messageId });
  };

  const take = async () => {
    for await (const m of messages) {
      if (stopping) {
        // Handed over after stop(): give it back at once rather than after its ack wait.
        m.nak();
        continue;
      }
      const p: Promise<void> = settle(m).finally(() => inHand.delete(p));
      inHand.add(p);
      if (inHand.size >= concurrency) await Promise.race(inHand);
    }
    const lost = await messages.closed();
    if (!stopping) throw lost ?? new Error('the consumer ended');
  };
  const done = (async () => {
    while (!stopping) {
      try {
        await take();
      } catch (err) {
        if (stopping) break;
        opts.onTopologyLost?.(err as Error);
        // Create them again as at start, and consume from there; NATS away meanwhile: ask again.
        for (;;) {
          await new Promise((r) => setTimeout(r, 1000));
          if (stopping) break;
          try {
            await ensureInboxTopology(opts.nc, t);
            messages = await consume();
            break;
          } catch (again) {
            opts.onTopologyLost?.(again as Error);
          }
        }
      }
    }
    await Promise.all(inHand);
  })();

  return {
    done,
    get inFlight() {
      return inHand.size;
    },
    async stop() {
      stopping = true;
      await messages.close();
      await done.catch(() => undefined);
      await Promise.all(inHand);
    },
  };
}

function headerValue(h: MsgHdrs | undefined, name: string): string | undefined {
  const v = h?.get(name);
  return v ? v : undefined;
}

/** A header value on one line (NATS headers cannot carry CR or LF), at most 1,000 characters. */
const oneLine = (s: string): string => s.replace(/[\r\n]+/g, ' ').slice(0, 1000);

async function deadLetter(
  js: ReturnType<typeof jetstream>,
  m: JsMsg,
  t: InboxTopology,
  reason: string,
  detail: string,
  messageId: string | undefined,
): Promise<void> {
  const h = natsHeaders();
  for (const [k, values] of m.headers ?? []) {
    if (k.toLowerCase() === 'nats-msg-id') continue;
    for (const v of values) h.append(k, v);
  }
  if (messageId) h.set(DeadLetterHeaders.messageId, messageId);
  h.set(DeadLetterHeaders.reason, reason);
  h.set(DeadLetterHeaders.detail, oneLine(detail));
  h.set(DeadLetterHeaders.deliveries, String(m.info.deliveryCount));
  h.set(DeadLetterHeaders.subject, m.subject);
  h.set(DeadLetterHeaders.stream, m.info.stream);
  h.set(DeadLetterHeaders.sequence, String(m.seq));
  // Dead-lettering the same delivery twice (the term lost) stores it once.
  await js.publish(t.deadLetterSubject, m.data, { headers: h, msgID: `dlq-${m.info.stream}-${m.seq}` });
}

export interface DeadLetter {
  sequence: number;
  reason: string;
  detail: string;
  deliveries: number;
  subject: string;
  messageId?: string;
  body: Uint8Array;
}

/**
 * What waits: messages the consumer has not settled (not yet delivered, or delivered and
 * not yet acked) and the dead letters held. Two requests to the server, none per message.
 */
export async function inboxBacklog(nc: NatsConnection, t: InboxTopology): Promise<{ pending: number; deadLetters: number }> {
  const jsm = await jetstreamManager(nc);
  const [consumer, dlq] = await Promise.all([jsm.consumers.info(t.stream, t.consumer), jsm.streams.info(t.deadLetterStream)]);
  return { pending: consumer.num_pending + consumer.num_ack_pending, deadLetters: dlq.state.messages };
}

/** The dead letters held now, oldest first (at most `limit`). */
export async function listDeadLetters(nc: NatsConnection, t: InboxTopology, limit = 100): Promise<DeadLetter[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(t.deadLetterStream);
  const out: DeadLetter[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && out.length < limit; seq++) {
    const sm = await jsm.streams.getMessage(t.deadLetterStream, { seq }).catch(() => null);
    if (sm) out.push(toDeadLetter(seq, sm.header, sm.data));
  }
  return out;
}

function toDeadLetter(sequence: number, h: MsgHdrs | undefined, body: Uint8Array): DeadLetter {
  return {
    sequence,
    reason: headerValue(h, DeadLetterHeaders.reason) ?? '',
    detail: headerValue(h, DeadLetterHeaders.detail) ?? '',
    deliveries: Number(headerValue(h, DeadLetterHeaders.deliveries) ?? 0),
    subject: headerValue(h, DeadLetterHeaders.subject) ?? '',
    messageId: headerValue(h, DeadLetterHeaders.messageId),
    body,
  };
}

/**
 * Puts a dead letter back on the subject it came from, after a fix: the same body and
 * headers, its own message ID (the inbox dedupes on it) and a broker ID of its own (so
 * the broker's duplicate window does not swallow it); then removes it from the
 * dead-letter stream. Requeued twice (a crash between the two), it is still processed once.
 */
export async function requeueDeadLetter(nc: NatsConnection, t: InboxTopology, sequence: number): Promise<DeadLetter> {
  const jsm = await jetstreamManager(nc);
  const sm = await jsm.streams.getMessage(t.deadLetterStream, { seq: sequence }).catch(() => null);
  if (!sm) throw new Error(`no dead letter ${sequence} in stream ${t.deadLetterStream}`);
  const letter = toDeadLetter(sequence, sm.header, sm.data);
  const h = natsHeaders();
  const ours = new Set(Object.values(DeadLetterHeaders).map((k) => k.toLowerCase()));
  for (const [k, values] of sm.header ?? []) {
    if (ours.has(k.toLowerCase()) || k.toLowerCase() === 'nats-msg-id') continue;
    for (const v of values) h.append(k, v);
  }
  if (letter.messageId) h.set(DeadLetterHeaders.messageId, letter.messageId);
  await jetstream(nc).publish(letter.subject, sm.data, { headers: h, msgID: `requeue-${t.deadLetterStream}-${sequence}` });
  await jsm.streams.deleteMessage(t.deadLetterStream, sequence);
  return letter;
}

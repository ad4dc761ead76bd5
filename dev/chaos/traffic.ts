import type { JetStreamClient } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { Pool } from 'pg';
import type { CreateOrderRequest } from '../../src/api/schemas';
import type { OrderMessage } from '../../src/orders/intake';
import type { Rng } from './rng';

export type OrderKind = 'success' | 'scarce' | 'decline' | 'out-of-stock' | 'cancel';
export type CancelMoment = 'at-once' | 'soon' | 'later';

export interface OrderPlan {
  index: number;
  idempotencyKey: string;
  kind: OrderKind;
  body: CreateOrderRequest;
  /** A second POST with the same key: at the same time as the first, or after its 201. */
  duplicate?: 'concurrent' | 'after';
  /**
   * A client that never retries: if its one POST fails, the order may still be
   * committed, and only the API's recovery job can start its saga.
   */
  abandonOnError?: boolean;
  cancel?: { moment: CancelMoment; delayMs: number };
  /** Published to the order stream instead of POSTed (assignDoors). */
  stream?: StreamPlan;
}

export interface StreamPlan {
  messageId: string;
  /** Where the message's ID travels: the Nats-Msg-Id header (the broker dedupes within its window too), or the body's messageId (only the inbox does). */
  idIn: 'header' | 'body';
  /** Published again, the same body and ID, this long after the first publish was acked. */
  duplicateAfterMs?: number;
}

/**
 * Sends a share of the orders (seeded) through the stream door instead of the HTTP API: the
 * order request as a message on sagaflow.orders.requested. A cancel needs the API (a stream
 * order belongs to no API client), so the orders planned to be cancelled stay HTTP, and
 * `share` is of the others. A stream order's customer is unique to it, so the audit finds the
 * orders each message made without trusting the inbox it checks. Some messages are published
 * again much later with the same ID (`duplicateShare` of them, `duplicateDelayMs` after).
 */
export function assignDoors(
  plans: OrderPlan[],
  rng: Rng,
  runTag: string,
  opts: { share: number; duplicateShare: number; duplicateDelayMs: (plan: OrderPlan, rng: Rng) => number },
): void {
  for (const plan of plans) {
    const toStream = rng.chance(opts.share);
    const idIn = rng.chance(2 / 3) ? 'header' : 'body';
    const duplicate = rng.chance(opts.duplicateShare);
    const delay = opts.duplicateDelayMs(plan, rng);
    if (plan.cancel || !toStream) continue;
    plan.stream = { messageId: `chaos-${runTag}-msg-${plan.index}`, idIn, duplicateAfterMs: duplicate ? delay : undefined };
    plan.body = { ...plan.body, customerId: `stream-${runTag}-${plan.index}` };
    delete plan.duplicate;
    delete plan.abandonOnError;
  }
}

/** The subject the intake consumes. */
export const ORDER_SUBJECT = 'sagaflow.orders.requested';

export const SKUS = { widget: 'chaos-widget', gadget: 'chaos-gadget', scarce: 'chaos-scarce', rare: 'chaos-rare' } as const;

/**
 * The run's orders, decided up front from the seed: the mix of paths, the
 * duplicates and the cancel moments, and the stock each SKU starts with.
 */
export function planOrders(n: number, rng: Rng, runTag: string): { plans: OrderPlan[]; initialStock: Record<string, number> } {
  const plans: OrderPlan[] = [];
  let widgets = 0;
  let gadgets = 0;
  let scarce = 0;
  for (let index = 0; index < n; index++) {
    const kind = rng.weighted<OrderKind>({ success: 40, scarce: 10, decline: 15, 'out-of-stock': 10, cancel: 25 });
    const items: CreateOrderRequest['items'] = [];
    if (kind === 'out-of-stock') {
      items.push({ sku: SKUS.rare, quantity: 5 });
    } else if (kind === 'scarce') {
      items.push({ sku: SKUS.scarce, quantity: 1 });
      scarce += 1;
    } else {
      const q = rng.int(1, 3);
      widgets += q;
      items.push({ sku: SKUS.widget, quantity: q });
      if (rng.chance(0.3)) {
        items.push({ sku: SKUS.gadget, quantity: 1 });
        gadgets += 1;
      }
    }
    const plan: OrderPlan = {
      index,
      idempotencyKey: `chaos-${runTag}-${index}`,
      kind,
      body: {
        customerId: `cust-${index % 7}`,
        items,
        amount: { amountMinor: rng.int(500, 20_000), currency: 'EUR' },
        paymentToken: kind === 'decline' ? 'tok_decline' : 'tok_visa',
        shippingAddress: { name: 'Chaos Monkey', line1: '1 Fault Line', city: 'Berlin', postalCode: '10115', country: 'DE' },
      },
    };
    const dup = rng.next();
    if (dup < 0.1) plan.duplicate = 'concurrent';
    else if (dup < 0.2) plan.duplicate = 'after';
    else if (dup < 0.28) plan.abandonOnError = true;
    if (kind === 'cancel') {
      const moment = rng.pick<CancelMoment>(['at-once', 'soon', 'later']);
      const delayMs = moment === 'at-once' ? 0 : moment === 'soon' ? rng.int(100, 500) : rng.int(1_000, 4_000);
      plan.cancel = { moment, delayMs };
    }
    plans.push(plan);
  }
  // Enough widgets and gadgets for every order; scarce stock for half of the orders that want it; rare never enough.
  const initialStock = {
    [SKUS.widget]: widgets + 10,
    [SKUS.gadget]: gadgets + 10,
    [SKUS.scarce]: Math.max(1, Math.floor(scarce / 2)),
    [SKUS.rare]: 2,
  };
  return { plans, initialStock };
}

export interface OrderOutcome {
  index: number;
  idempotencyKey: string;
  kind: OrderKind;
  orderId?: string;
  /** The final answer to the POST: a status, or the error that ended the retries. */
  post: string;
  postAttempts: number;
  /** Epoch ms of the first POST attempt. */
  firstPostAt: number;
  /** The client sent one POST and walked away when it failed. */
  abandoned?: boolean;
  cancel?: string;
  cancelMoment?: CancelMoment;
  duplicate?: 'concurrent' | 'after';
  /** Stream orders: the message, whether the broker acked it, and its repeat. */
  stream?: {
    messageId: string;
    customerId: string;
    idIn: 'header' | 'body';
    acked: boolean;
    /** The repeat with the same ID: acked (stored, or dropped by the broker as a duplicate), how long after the first. */
    repeat?: { acked: boolean; droppedByBroker: boolean; afterMs: number };
  };
}

export interface TrafficOptions {
  apiUrl: string;
  apiKey: string;
  plans: OrderPlan[];
  concurrency: number;
  /** Orders started per second at most, so the faults have time to strike while orders flow. */
  ratePerSecond: number;
  /** The driver's own database pool, to see orders close. */
  db: Pool;
  /** How long one order may hold its slot waiting for its saga to close. */
  orderSettleMs: number;
  /** How long a POST or a cancel is retried before the client gives up. */
  giveUpMs: number;
  requestTimeoutMs: number;
  signal: AbortSignal;
  /** Called as orders are submitted (POST answered and cancel sent): the fraction done. */
  onSubmitted: (fraction: number) => void;
  rng: Rng;
  /** The stream door, for the plans that have `stream`. */
  js?: JetStreamClient;
}

export interface StreamTrafficStats {
  planned: number;
  /** Messages the broker acked (stored; a retry after a lost ack is acked as a duplicate). */
  published: number;
  /** Messages never acked after giveUpMs of retries. */
  gaveUp: number;
  publishAttempts: number;
  publishRetries: number;
  idInHeader: number;
  idInBody: number;
  duplicatesPlanned: number;
  /** Repeats acked by the broker; those it stored reach the intake, whose inbox must drop them. */
  duplicatesPublished: number;
  /** Repeats the broker answered as duplicates (inside its window): these never reach the inbox. */
  duplicatesDroppedByBroker: number;
  /** First publishes retried after a lost ack that the broker answered as duplicates. */
  retriesDroppedByBroker: number;
  /** The shortest and longest time between a message and its repeat. */
  duplicateDelayMs: { min: number; max: number };
  /** Every publish attempt's outcome: acked, duplicate, or the error. */
  publishes: Record<string, number>;
}

export interface TrafficStats {
  http: Record<string, number>;
  retries: number;
  duplicatePosts: number;
  /** Clients that sent one POST, saw it fail and never came back. */
  abandoned: number;
  /** Things the client saw that the API promises never happen (a replay naming another order...). */
  violations: string[];
  /** Odd answers that are not broken promises (a client that gave up while the API was down). */
  notes: string[];
  stream: StreamTrafficStats;
}

interface Answer {
  status: number;
  body: unknown;
  replayed: boolean;
  retryAfterS?: number;
}

/**
 * Drives the planned orders through the real HTTP API as a careful client
 * would: bounded concurrency and rate, retries with the same Idempotency-Key
 * on 5xx, connection errors and 409 in-flight, some duplicate POSTs, and
 * cancels at planned moments. Each order holds its slot until its row leaves
 * `pending` (bounded), so concurrency is the number of sagas in flight.
 */
export async function driveTraffic(opts: TrafficOptions): Promise<{ outcomes: OrderOutcome[]; stats: TrafficStats }> {
  const stream: StreamTrafficStats = {
    planned: 0,
    published: 0,
    gaveUp: 0,
    publishAttempts: 0,
    publishRetries: 0,
    idInHeader: 0,
    idInBody: 0,
    duplicatesPlanned: 0,
    duplicatesPublished: 0,
    duplicatesDroppedByBroker: 0,
    retriesDroppedByBroker: 0,
    duplicateDelayMs: { min: 0, max: 0 },
    publishes: {},
  };
  const stats: TrafficStats = { http: {}, retries: 0, duplicatePosts: 0, abandoned: 0, violations: [], notes: [], stream };
  const outcomes: OrderOutcome[] = [];
  const watcher = new ClosureWatcher(opts.db, opts.signal);
  const started = Date.now();
  let submitted = 0;
  let next = 0;
  // A repeated publish counts as a submission of its own: the faults go on until the last one is out.
  const total = opts.plans.length + opts.plans.filter((p) => p.stream?.duplicateAfterMs !== undefined).length;
  const repeats: Promise<void>[] = [];
  const submittedOne = () => {
    submitted += 1;
    opts.onSubmitted(submitted / total);
  };

  const count = (label: string, into: Record<string, number> = stats.http) => (into[label] = (into[label] ?? 0) + 1);

  const send = async (method: 'POST', path: string, label: string, body: unknown, key?: string): Promise<Answer | Error> => {
    try {
      const res = await fetch(`${opts.apiUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${opts.apiKey}`,
          'content-type': 'application/json',
          ...(key ? { 'idempotency-key': key } : {}),
        },
        body: JSON.stringify(body),
        signal: AbortSignal.any([AbortSignal.timeout(opts.requestTimeoutMs), opts.signal]),
      });
      const text = await res.text();
      count(`${label} ${res.status}`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
      const ra = Number(res.headers.get('retry-after'));
      return { status: res.status, body: parsed, replayed: res.headers.get('idempotent-replayed') === 'true', retryAfterS: Number.isFinite(ra) ? ra : undefined };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      const code = e.cause?.code ?? e.name;
      count(`${label} ${code}`);
      return new Error(code);
    }
  };

  /** POST /orders until a final answer: 201 or a 4xx other than 409. */
  const postOrder = async (plan: OrderPlan, outcome: { postAttempts: number }): Promise<Answer | Error> => {
    const deadline = Date.now() + opts.giveUpMs;
    for (let attempt = 0; ; attempt++) {
      outcome.postAttempts += 1;
      const answer = await send('POST', '/orders', 'POST /orders', plan.body, plan.idempotencyKey);
      const retryable = answer instanceof Error || answer.status >= 500 || answer.status === 409;
      if (!retryable || plan.abandonOnError || opts.signal.aborted || Date.now() > deadline) return answer;
      stats.retries += 1;
      const wait = !(answer instanceof Error) && answer.status === 409 && answer.retryAfterS !== undefined
        ? Math.min(2_000, Math.max(250, answer.retryAfterS * 1000))
        : Math.min(3_000, 250 * 1.6 ** attempt);
      await sleep(opts.rng.jitter(wait, 0.2), opts.signal);
    }
  };

  const cancelOrder = async (orderId: string): Promise<string> => {
    const deadline = Date.now() + opts.giveUpMs;
    for (let attempt = 0; ; attempt++) {
      const answer = await send('POST', `/orders/${orderId}/cancel`, 'POST /orders/:id/cancel', { reason: 'chaos: customer changed their mind' });
      if (!(answer instanceof Error) && answer.status < 500) return String(answer.status);
      if (opts.signal.aborted || Date.now() > deadline) return answer instanceof Error ? answer.message : String(answer.status);
      stats.retries += 1;
      await sleep(opts.rng.jitter(Math.min(3_000, 250 * 1.6 ** attempt), 0.2), opts.signal);
    }
  };

  /**
   * Publishes an order message until the broker acks it, with the same ID every time (a
   * producer's retry); the ack says whether the broker stored it or took it for a duplicate.
   */
  const publishOrder = async (plan: OrderPlan, s: StreamPlan): Promise<{ duplicate: boolean } | Error> => {
    const js = opts.js;
    if (!js) return new Error('no stream door');
    const message: OrderMessage = s.idIn === 'body' ? { ...plan.body, messageId: s.messageId } : plan.body;
    const data = JSON.stringify(message);
    const deadline = Date.now() + opts.giveUpMs;
    for (let attempt = 0; ; attempt++) {
      stream.publishAttempts += 1;
      let result: { duplicate: boolean } | Error;
      try {
        const h = natsHeaders();
        h.set('content-type', 'application/json');
        const ack = await js.publish(ORDER_SUBJECT, data, { headers: h, timeout: 5_000, ...(s.idIn === 'header' ? { msgID: s.messageId } : {}) });
        result = { duplicate: ack.duplicate };
        count(`publish ${ack.duplicate ? 'acked as a duplicate' : 'acked'}`, stream.publishes);
      } catch (err) {
        const e = err as Error & { code?: string };
        count(`publish ${e.code ?? e.name}`, stream.publishes);
        result = new Error(`${e.code ?? e.name}: ${e.message}`);
      }
      if (!(result instanceof Error) || opts.signal.aborted || Date.now() > deadline) return result;
      stream.publishRetries += 1;
      await sleep(opts.rng.jitter(Math.min(3_000, 250 * 1.6 ** attempt), 0.2), opts.signal);
    }
  };

  const runStreamOrder = async (plan: OrderPlan, s: StreamPlan, outcome: OrderOutcome): Promise<void> => {
    stream.planned += 1;
    if (s.idIn === 'header') stream.idInHeader += 1;
    else stream.idInBody += 1;
    const info: NonNullable<OrderOutcome['stream']> = { messageId: s.messageId, customerId: plan.body.customerId, idIn: s.idIn, acked: false };
    outcome.stream = info;
    const first = await publishOrder(plan, s);
    outcome.postAttempts = 1;
    const ackedAt = Date.now();
    if (first instanceof Error) {
      outcome.post = first.message;
      if (!opts.signal.aborted) {
        stream.gaveUp += 1;
        stats.notes.push(`message ${s.messageId} (${plan.kind}): never acked after ${(opts.giveUpMs / 1000).toFixed(0)} s: ${first.message}`);
      }
    } else {
      outcome.post = 'acked';
      info.acked = true;
      stream.published += 1;
      if (first.duplicate) stream.retriesDroppedByBroker += 1;
    }
    if (s.duplicateAfterMs !== undefined) {
      stream.duplicatesPlanned += 1;
      const delayMs = s.duplicateAfterMs;
      // The repeat goes on in the background; this order's slot moves on.
      repeats.push(
        (async () => {
          await sleep(Math.max(0, ackedAt + delayMs - Date.now()), opts.signal);
          if (opts.signal.aborted) return;
          const again = await publishOrder(plan, s);
          const afterMs = Date.now() - ackedAt;
          info.repeat = { acked: !(again instanceof Error), droppedByBroker: !(again instanceof Error) && again.duplicate, afterMs };
          if (!(again instanceof Error)) {
            // A message first never acked, acked the second time, is accepted all the same.
            if (!info.acked) {
              info.acked = true;
              stream.published += 1;
              stream.gaveUp = Math.max(0, stream.gaveUp - 1);
            }
            stream.duplicatesPublished += 1;
            if (again.duplicate) stream.duplicatesDroppedByBroker += 1;
            const d = stream.duplicateDelayMs;
            d.min = d.min === 0 ? afterMs : Math.min(d.min, afterMs);
            d.max = Math.max(d.max, afterMs);
          }
          submittedOne();
        })(),
      );
    }
    submittedOne();
    if (info.acked) await watcher.closed({ customerId: info.customerId }, opts.orderSettleMs);
  };

  const idOf = (a: Answer | Error): string | undefined =>
    a instanceof Error || a.status !== 201 ? undefined : (a.body as { id?: string } | null)?.id;
  const describe = (a: Answer | Error): string => (a instanceof Error ? a.message : String(a.status));

  const runOrder = async (plan: OrderPlan): Promise<void> => {
    const outcome: OrderOutcome = {
      index: plan.index,
      idempotencyKey: plan.idempotencyKey,
      kind: plan.kind,
      post: 'not sent',
      postAttempts: 0,
      firstPostAt: Date.now(),
      duplicate: plan.duplicate,
      cancelMoment: plan.cancel?.moment,
    };
    outcomes.push(outcome);
    if (plan.stream) return runStreamOrder(plan, plan.stream, outcome);
    let answer: Answer | Error;
    if (plan.duplicate === 'concurrent') {
      stats.duplicatePosts += 1;
      const twin = { postAttempts: 0 };
      const [a, b] = await Promise.all([postOrder(plan, outcome), postOrder(plan, twin)]);
      answer = idOf(a) ? a : b;
      if (idOf(a) && idOf(b) && idOf(a) !== idOf(b)) {
        stats.violations.push(`key ${plan.idempotencyKey}: two concurrent POSTs created two orders, ${idOf(a)} and ${idOf(b)}`);
      }
    } else {
      answer = await postOrder(plan, outcome);
    }
    outcome.post = describe(answer);
    const orderId = idOf(answer);
    if (!orderId) {
      if (plan.abandonOnError && !opts.signal.aborted) {
        outcome.abandoned = true;
        stats.abandoned += 1;
      } else if (!opts.signal.aborted) {
        const body = answer instanceof Error ? '' : ` ${JSON.stringify(answer.body).slice(0, 200)}`;
        stats.notes.push(`key ${plan.idempotencyKey} (${plan.kind}): POST gave up after ${outcome.postAttempts} attempts with ${outcome.post}${body}`);
      }
      submittedOne();
      return;
    }
    outcome.orderId = orderId;
    if (plan.duplicate === 'after') {
      stats.duplicatePosts += 1;
      const again = await postOrder(plan, { postAttempts: 0 });
      if (!(again instanceof Error) && again.status === 201 && idOf(again) !== orderId) {
        stats.violations.push(`key ${plan.idempotencyKey}: a repeated POST answered order ${idOf(again)}, the first ${orderId}`);
      } else if (!(again instanceof Error) && again.status !== 201 && again.status < 500 && again.status !== 409) {
        stats.violations.push(`key ${plan.idempotencyKey}: a repeated POST of order ${orderId} answered ${again.status}`);
      }
    }
    if (plan.cancel) {
      if (plan.cancel.delayMs > 0) await sleep(plan.cancel.delayMs, opts.signal);
      if (!opts.signal.aborted) outcome.cancel = await cancelOrder(orderId);
    }
    submittedOne();
    await watcher.closed({ orderId }, opts.orderSettleMs);
  };

  const slots = Array.from({ length: Math.max(1, opts.concurrency) }, async () => {
    while (!opts.signal.aborted) {
      const i = next++;
      const plan = opts.plans[i];
      if (!plan) return;
      // Arrivals are paced: order i starts no earlier than i / rate seconds into the run.
      const due = started + (i * 1000) / opts.ratePerSecond;
      if (due > Date.now()) await sleep(due - Date.now(), opts.signal);
      if (opts.signal.aborted) return;
      await runOrder(plan);
    }
  });
  await Promise.all(slots);
  await Promise.all(repeats);
  watcher.stop();
  return { outcomes: outcomes.sort((a, b) => a.index - b.index), stats };
}

/** One poller for every order waiting to close, so twenty waiting clients cost one query. */
class ClosureWatcher {
  /** By order ID (HTTP orders) or by customer (a stream order's ID is the intake's to choose). */
  private readonly waiting = new Map<string, (() => void)[]>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly db: Pool,
    private readonly signal: AbortSignal,
  ) {}

  closed(which: { orderId: string } | { customerId: string }, timeoutMs: number): Promise<void> {
    const key = 'orderId' in which ? `id:${which.orderId}` : `customer:${which.customerId}`;
    return new Promise<void>((resolve) => {
      if (this.signal.aborted) return resolve();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timeout);
        this.signal.removeEventListener('abort', finish);
        const list = this.waiting.get(key)?.filter((f) => f !== finish);
        if (list?.length) this.waiting.set(key, list);
        else this.waiting.delete(key);
        resolve();
      };
      const timeout = setTimeout(finish, timeoutMs);
      this.signal.addEventListener('abort', finish, { once: true });
      this.waiting.set(key, [...(this.waiting.get(key) ?? []), finish]);
      this.schedule();
    });
  }

  stop(): void {
    clearTimeout(this.timer);
    for (const fs of [...this.waiting.values()]) for (const f of fs) f();
  }

  private schedule(): void {
    if (this.timer || this.polling) return;
    this.timer = setTimeout(() => void this.poll(), 400);
  }

  private async poll(): Promise<void> {
    this.timer = undefined;
    this.polling = true;
    try {
      const keys = [...this.waiting.keys()];
      const ids = keys.filter((k) => k.startsWith('id:')).map((k) => k.slice(3));
      const customers = keys.filter((k) => k.startsWith('customer:')).map((k) => k.slice(9));
      if (keys.length) {
        const res = await this.db.query<{ key: string }>(
          `SELECT 'id:' || id AS key FROM orders WHERE id = ANY($1) AND status <> 'pending'
           UNION ALL
           SELECT 'customer:' || customer_id FROM orders WHERE customer_id = ANY($2) AND status <> 'pending'`,
          [ids, customers],
        );
        for (const { key } of res.rows) for (const f of this.waiting.get(key) ?? []) f();
      }
    } catch {
      // The database is restarting: the next poll will see.
    } finally {
      this.polling = false;
      if (this.waiting.size && !this.signal.aborted) this.schedule();
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

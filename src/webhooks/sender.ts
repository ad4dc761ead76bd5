import { inTransaction, type Db } from '../db/pool';
import { wakeablePause } from '@sagaflow/toolkit/outbox';
import { toCloudEvent, type OrderEventType } from '../orders/relay';
import { storableText } from '@sagaflow/toolkit/ledger';
import { endpointProblem } from './addresses';
import { sign, unseal } from './signing';

/**
 * Sends the webhook deliveries the outbox trigger writes: each as a CloudEvent,
 * signed the Standard Webhooks way, the delivery's ID as `webhook-id` on every
 * attempt (receivers dedupe on it). Every attempt is recorded. A failed attempt is
 * retried on a schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h by default),
 * then the delivery ends failed; an endpoint whose attempts keep failing is disabled.
 *
 * Each endpoint has at most one delivery in flight, its oldest pending one, so
 * events reach it in order and a slow or hanging endpoint holds one of the
 * `concurrency` slots for at most `timeoutMs`: other clients' deliveries go on.
 */
export interface WebhookSenderOptions {
  db: Db;
  sealingKey: Buffer;
  /** Deliveries in flight at once, across endpoints (16). */
  concurrency?: number;
  /** One attempt's time limit (10 s). */
  timeoutMs?: number;
  /** The waits before each retry; its length + 1 is the attempts a delivery gets. */
  retryScheduleMs?: number[];
  /** Consecutive failed attempts after which an endpoint is disabled (30). */
  disableAfterFailures?: number;
  allowPrivate?: boolean;
  idleMs?: number;
  /** Each attempt, once recorded; `state` is the delivery's after it (`failed`: no retry left). */
  onAttempt?: (a: { deliveryId: string; endpointId: string; ok: boolean; status?: number; error?: string; state: DeliveryState }) => void;
  onDisabled?: (endpointId: string, reason: string) => void;
  onError?: (err: Error) => void;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed';

export const DEFAULT_RETRY_SCHEDULE_MS = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];

interface Claimed {
  id: string;
  endpoint_id: string;
  url: string;
  secret_sealed: string;
  event_id: string;
  event_position: string;
  order_id: string;
  type: OrderEventType;
  data: unknown;
  occurred_at: Date;
  attempts: number;
  round_start: number;
}

export interface RunningSender {
  stop(): Promise<void>;
  done: Promise<void>;
}

/** Claims due deliveries: the oldest pending one of each live endpoint that has none in flight. */
async function claim(db: Db, limit: number, leaseMs: number): Promise<Claimed[]> {
  const { rows } = await db.query<Claimed>(
    `WITH heads AS (
       SELECT DISTINCT ON (d.endpoint_id) d.id, d.next_attempt_at, d.locked_until
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.state = 'pending' AND e.deleted_at IS NULL AND e.disabled_at IS NULL
        ORDER BY d.endpoint_id, d.event_position),
     due AS (
       SELECT id FROM heads
        WHERE next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
        ORDER BY next_attempt_at LIMIT $1),
     taken AS (
       UPDATE webhook_deliveries w SET locked_until = now() + $2 * interval '1 ms'
        WHERE w.id IN (SELECT id FROM due) AND w.state = 'pending' AND (w.locked_until IS NULL OR w.locked_until < now())
        RETURNING w.*)
     SELECT t.id, t.endpoint_id, e.url, e.secret_sealed, t.event_id, t.event_position, t.order_id, t.type, t.data,
            t.occurred_at, t.attempts, t.round_start
       FROM taken t JOIN webhook_endpoints e ON e.id = t.endpoint_id`,
    [limit, leaseMs],
  );
  return rows;
}

/** The body of a delivery: the order event as a CloudEvent, the same bytes on every attempt. */
export function deliveryBody(d: Pick<Claimed, 'event_id' | 'event_position' | 'order_id' | 'type' | 'data' | 'occurred_at'>): string {
  return JSON.stringify(
    toCloudEvent({ position: d.event_position, event_id: d.event_id, subject: d.order_id, type: d.type, data: d.data, occurred_at: d.occurred_at }),
  );
}

async function attempt(d: Claimed, opts: WebhookSenderOptions): Promise<{ ok: boolean; status?: number; error?: string; ms: number }> {
  const started = Date.now();
  try {
    // Checked again before every attempt: a name registered on a public address may since point inside.
    const refused = await endpointProblem(d.url, opts.allowPrivate ?? false);
    if (refused) return { ok: false, error: refused, ms: Date.now() - started };
    const body = deliveryBody(d);
    const ts = Math.floor(Date.now() / 1000);
    const res = await fetch(d.url, {
      method: 'POST',
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
      headers: {
        'content-type': 'application/json',
        'user-agent': 'sagaflow-webhooks',
        'webhook-id': d.id,
        'webhook-timestamp': String(ts),
        'webhook-signature': sign(unseal(d.secret_sealed, opts.sealingKey), d.id, ts, body),
      },
    });
    await res.arrayBuffer().catch(() => undefined);
    return res.ok ? { ok: true, status: res.status, ms: Date.now() - started } : { ok: false, status: res.status, error: `HTTP ${res.status}`, ms: Date.now() - started };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    const why = e.name === 'TimeoutError' ? `no answer within ${opts.timeoutMs ?? 10_000} ms` : `${e.message}${e.cause?.code ? ` (${e.cause.code})` : ''}`;
    return { ok: false, error: why, ms: Date.now() - started };
  }
}

/**
 * Records one attempt: its row, its delivery's new state and its endpoint's count of failures, in one
 * transaction. In pieces, a failure after the first (the sender killed, its connection terminated)
 * left an attempt row whose number every later attempt of the delivery collided with: the delivery
 * was sent again at every lease and never marked, and held back every later event of its endpoint.
 * Now a failed recording leaves nothing: the claim runs out, and the attempt is made and recorded again.
 */
async function record(db: Db, d: Claimed, r: Awaited<ReturnType<typeof attempt>>, opts: WebhookSenderOptions): Promise<DeliveryState> {
  const schedule = opts.retryScheduleMs ?? DEFAULT_RETRY_SCHEDULE_MS;
  const n = d.attempts + 1;
  const error = r.error === undefined ? null : storableText(r.error).slice(0, 1000);
  const limit = opts.disableAfterFailures ?? 30;
  const wait = r.ok ? undefined : schedule[n - d.round_start - 1];
  const disabled = await inTransaction(db, async (tx) => {
    await tx.query(`INSERT INTO webhook_attempts (delivery_id, attempt, status, error, duration_ms) VALUES ($1, $2, $3, $4, $5)`, [
      d.id,
      n,
      r.status ?? null,
      error,
      r.ms,
    ]);
    if (r.ok) {
      await tx.query(
        `UPDATE webhook_deliveries SET state = 'delivered', delivered_at = now(), attempts = $2, last_status = $3, last_error = NULL, locked_until = NULL
          WHERE id = $1`,
        [d.id, n, r.status],
      );
      await tx.query(`UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = $1`, [d.endpoint_id]);
      return false;
    }
    await tx.query(
      `UPDATE webhook_deliveries SET attempts = $2, last_status = $3, last_error = $4, locked_until = NULL,
              state = CASE WHEN $5::bigint IS NULL THEN 'failed' ELSE 'pending' END,
              next_attempt_at = CASE WHEN $5::bigint IS NULL THEN next_attempt_at ELSE now() + $5 * interval '1 ms' END
        WHERE id = $1`,
      [d.id, n, r.status ?? null, error, wait ?? null],
    );
    const { rows } = await tx.query<{ disabled: boolean }>(
      `UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1,
              disabled_at = CASE WHEN consecutive_failures + 1 >= $2 THEN now() END,
              disabled_reason = CASE WHEN consecutive_failures + 1 >= $2 THEN $3 END
        WHERE id = $1 AND disabled_at IS NULL RETURNING disabled_at IS NOT NULL AS disabled`,
      [d.endpoint_id, limit, `${limit} consecutive failed attempts; the last: ${error}`],
    );
    return rows[0]?.disabled === true;
  });
  if (disabled) opts.onDisabled?.(d.endpoint_id, `${limit} consecutive failed attempts`);
  if (r.ok) return 'delivered';
  return wait === undefined ? 'failed' : 'pending';
}

/**
 * The deliveries waiting on enabled endpoints (retries included) and the age of the
 * oldest, and the endpoints disabled now: what an operator watches for the sender.
 */
export async function webhookBacklog(db: Db): Promise<{ pending: number; oldestMs: number; disabledEndpoints: number }> {
  const { rows } = await db.query<{ pending: string; age_ms: string | null; disabled: string }>(
    `SELECT count(*) AS pending, (extract(epoch FROM now() - min(d.created_at)) * 1000)::bigint AS age_ms,
            (SELECT count(*) FROM webhook_endpoints WHERE disabled_at IS NOT NULL AND deleted_at IS NULL) AS disabled
       FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
      WHERE d.state = 'pending' AND e.disabled_at IS NULL AND e.deleted_at IS NULL`,
  );
  const r = rows[0]!;
  return { pending: Number(r.pending), oldestMs: Number(r.age_ms ?? 0), disabledEndpoints: Number(r.disabled) };
}

export function runWebhookSender(opts: WebhookSenderOptions): RunningSender {
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  // A claim outlives the attempt's time limit: no second sender takes it meanwhile.
  const leaseMs = (opts.timeoutMs ?? 10_000) + 30_000;
  const inFlight = new Set<Promise<void>>();
  let stopping = false;
  const { pause, wake } = wakeablePause();
  const send = async (d: Claimed) => {
    const r = await attempt(d, opts);
    const state = await record(opts.db, d, r, opts);
    opts.onAttempt?.({ deliveryId: d.id, endpointId: d.endpoint_id, ok: r.ok, status: r.status, error: r.error, state });
  };
  const done = (async () => {
    while (!stopping) {
      const free = concurrency - inFlight.size;
      let claimed: Claimed[] = [];
      if (free > 0) {
        try {
          claimed = await claim(opts.db, free, leaseMs);
        } catch (err) {
          opts.onError?.(err as Error);
        }
      }
      for (const d of claimed) {
        const p: Promise<void> = send(d)
          .catch((err: Error) => opts.onError?.(err))
          .finally(() => {
            inFlight.delete(p);
            wake();
          });
        inFlight.add(p);
      }
      if (!claimed.length) await pause(opts.idleMs ?? 200);
    }
    await Promise.all(inFlight);
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


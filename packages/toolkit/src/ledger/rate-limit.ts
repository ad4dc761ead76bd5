import { performance } from 'node:perf_hooks';
import { ApplicationFailure } from '@temporalio/common';
import type { Db } from '../db';
import { LedgerFailure } from './ledger';

/**
 * A rate limiter kept in PostgreSQL: one token bucket per name, in the ledger's
 * `ledger_rate_limits` table (schema.ts, version 5), so every process on the
 * database shares one budget per name, however many workers run and whether
 * the work runs as activities or local activities.
 *
 * ```ts
 * const provider = createRateLimiter(pool, { name: 'payment-provider', perSecond: 50, maxWaitMs: 5_000 });
 * await provider.acquire(Context.current().cancellationSignal); // then send the request
 * ```
 *
 * Each acquire is one statement, outside any transaction (the row is locked
 * for that statement only): it refills the bucket for the time elapsed since
 * its last change (PostgreSQL's clock_timestamp(), one clock for every
 * process), capped at `burst`, and takes one token. The bucket may go into
 * debt: the caller then sleeps debt / perSecond before its turn, so requests
 * beyond the burst start 1/perSecond apart. A turn further away than
 * `maxWaitMs` takes nothing (the row is left as it was) and the acquire fails
 * with a retryable `LedgerFailure.RateLimited`: the activity retries with its
 * retry policy's backoff instead of queueing without bound.
 */
export interface RateLimiterOptions {
  /** The bucket's name: every limiter with this name on the database shares its tokens. */
  name: string;
  /** Tokens added per second: the sustained rate. Positive and finite. */
  perSecond: number;
  /**
   * The most tokens the bucket holds: how many requests can start at once after a
   * quiet spell. An integer >= 1. Default: one second's worth, max(1, ceil(perSecond)).
   */
  burst?: number;
  /**
   * The longest an acquire waits for its turn; a turn further away fails the acquire
   * (RateLimited, retryable) and takes no token. A finite number >= 0 (0: only a token
   * available now), or Infinity. Default 60 000.
   */
  maxWaitMs?: number;
}

export interface RateLimiter {
  readonly name: string;
  readonly perSecond: number;
  readonly burst: number;
  readonly maxWaitMs: number;
  /**
   * Takes a token, then waits for its turn; resolves with the milliseconds it waited
   * for it (0 with a token at hand). Rejects with a retryable ApplicationFailure of type
   * `LedgerFailure.RateLimited` when the turn is more than maxWaitMs away (nothing taken),
   * and with `signal.reason` when the signal aborts the wait (the token taken stays
   * spent: the budget errs on the side of fewer requests).
   */
  acquire(signal?: AbortSignal): Promise<number>;
}

export const DEFAULT_RATE_LIMIT_MAX_WAIT_MS = 60_000;

/**
 * Refill for the time elapsed (never negative: a statement that read the clock
 * before another's committed change takes its turn after it), cap at the burst,
 * take one token, but only if the debt left would be paid within the longest
 * wait. Returns the wait in seconds; no row when refused.
 * $1 name, $2 burst, $3 tokens per second, $4 longest wait in seconds (NULL: no bound).
 */
const ACQUIRE_SQL = `
INSERT INTO ledger_rate_limits AS b (name, tokens, updated_at)
VALUES ($1, $2::double precision - 1, clock_timestamp())
ON CONFLICT (name) DO UPDATE
   SET tokens = LEAST($2::double precision,
                      b.tokens + $3::double precision * GREATEST(0, extract(epoch FROM excluded.updated_at - b.updated_at)::double precision)) - 1,
       updated_at = GREATEST(b.updated_at, excluded.updated_at)
 WHERE $4::double precision IS NULL
    OR LEAST($2::double precision,
             b.tokens + $3::double precision * GREATEST(0, extract(epoch FROM excluded.updated_at - b.updated_at)::double precision)) - 1
       >= -$3::double precision * $4::double precision
RETURNING GREATEST(0, -b.tokens) / $3::double precision AS wait_seconds`;

/** A limiter on `db`'s bucket `name`; throws a RangeError on options out of range. Run migrateLedger(db) first. */
export function createRateLimiter(db: Db, options: RateLimiterOptions): RateLimiter {
  const { name, perSecond } = options;
  const refuse = (what: string, value: unknown): never => {
    throw new RangeError(`rate limiter ${JSON.stringify(name)}: ${what}, got ${String(value)}`);
  };
  if (typeof name !== 'string' || name.length === 0) refuse('name must be a non-empty string', name);
  if (typeof perSecond !== 'number' || !Number.isFinite(perSecond) || perSecond <= 0) {
    refuse('perSecond must be a positive finite number', perSecond);
  }
  const burst = options.burst ?? Math.max(1, Math.ceil(perSecond));
  if (!Number.isSafeInteger(burst) || burst < 1) refuse('burst must be an integer >= 1', burst);
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_RATE_LIMIT_MAX_WAIT_MS;
  if (typeof maxWaitMs !== 'number' || Number.isNaN(maxWaitMs) || maxWaitMs < 0) {
    refuse('maxWaitMs must be a number >= 0 (or Infinity)', maxWaitMs);
  }
  const maxWaitSeconds = Number.isFinite(maxWaitMs) ? maxWaitMs / 1000 : null;

  return {
    name,
    perSecond,
    burst,
    maxWaitMs,
    async acquire(signal?: AbortSignal): Promise<number> {
      signal?.throwIfAborted();
      const res = await db.query<{ wait_seconds: number }>(ACQUIRE_SQL, [name, burst, perSecond, maxWaitSeconds]);
      const row = res.rows[0];
      if (!row) {
        throw ApplicationFailure.retryable(
          `rate limiter ${name}: no turn within ${maxWaitMs} ms at ${perSecond}/s (burst ${burst})`,
          LedgerFailure.RateLimited,
          { limiter: name, perSecond, burst, maxWaitMs },
        );
      }
      const waitMs = row.wait_seconds * 1000;
      if (waitMs > 0) await sleepUntil(performance.now() + waitMs, signal);
      return waitMs;
    },
  };
}

/**
 * Resolves at `deadline` (performance.now() time), never before: a timer may fire a
 * little early (the event loop's clock is coarse), and a request started early would
 * break the rate. Rejects with the signal's reason when it aborts.
 */
function sleepUntil(deadline: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const arm = () => {
      const left = deadline - performance.now();
      if (left <= 0) {
        signal?.removeEventListener('abort', onAbort);
        resolve();
        return;
      }
      timer = setTimeout(arm, Math.ceil(left));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    arm();
  });
}

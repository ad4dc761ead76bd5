/**
 * The ledger's rate limiter against real PostgreSQL: requests beyond the burst
 * start spread at the rate, two limiters (two workers) on one database draw
 * from one bucket, a turn too far away is refused without taking a token, a
 * signal ends the wait, bad options are refused. Times are only ever bounded
 * from below (behaviour); the bucket's row is read for what it keeps.
 */
import { performance } from 'node:perf_hooks';
import { LedgerFailure } from '../../packages/toolkit/src/ledger/ledger';
import { createRateLimiter, type RateLimiter, type RateLimiterOptions } from '../../packages/toolkit/src/ledger/rate-limit';
import { createPool, type Db } from '../../src/db/pool';
import { createTestSchema, databaseUrl, uniqueId } from '../helpers/context';
import { until } from '../helpers/until';
import { busiestSecond } from '../helpers/rate';

let db: Db;
let schema: string;
let drop: () => Promise<void>;

beforeAll(async () => {
  ({ db, schema, drop } = await createTestSchema('ratelimit'));
});
afterAll(async () => {
  await drop?.();
});

interface Bucket {
  tokens: number;
  updated_at: string;
}

const bucket = async (name: string): Promise<Bucket | undefined> =>
  (
    await db.query<Bucket>(
      // updated_at as text: a Date would drop its microseconds, and "unchanged" must mean unchanged.
      `SELECT tokens, updated_at::text AS updated_at FROM ledger_rate_limits WHERE name = $1`,
      [name],
    )
  ).rows[0];

/** Starts `n` acquires at once on `limiters` in turn; resolves with when each acquire let its caller go (performance.now()). */
async function starts(limiters: RateLimiter[], n: number): Promise<number[]> {
  const all = Array.from({ length: n }, async (_, i) => {
    await limiters[i % limiters.length]!.acquire();
    return performance.now();
  });
  return (await Promise.all(all)).sort((a, b) => a - b);
}

async function rejection(p: Promise<unknown>): Promise<{ type?: unknown; nonRetryable?: unknown; message?: unknown }> {
  try {
    await p;
  } catch (err) {
    return err as { type?: unknown; nonRetryable?: unknown };
  }
  throw new Error('expected a rejection');
}

test('past the burst, requests start spread at the rate: no second holds more than rate + burst', async () => {
  const R = 10;
  const B = 3;
  const N = 16;
  const name = uniqueId('spread');
  const limiter = createRateLimiter(db, { name, perSecond: R, burst: B });
  const t0 = performance.now();
  const at = await starts([limiter], N);
  expect(busiestSecond(at)).toBeLessThanOrEqual(R + B);
  // The N - B beyond the burst each waited a turn 1/R after the one before.
  expect(at[N - 1]! - t0).toBeGreaterThanOrEqual(((N - B - 1) / R) * 1000);
  // One row keeps the bucket; it never holds more than the burst.
  const row = await bucket(name);
  expect(row).toBeDefined();
  expect(row!.tokens).toBeLessThanOrEqual(B);
});

test('two limiters on one database (two workers) share one budget', async () => {
  const R = 8;
  const B = 2;
  const N = 14;
  const name = uniqueId('shared');
  // A pool of its own, as another worker process has.
  const other = createPool({ connectionString: databaseUrl(), schema, max: 10 });
  try {
    const opts: RateLimiterOptions = { name, perSecond: R, burst: B };
    const t0 = performance.now();
    const at = await starts([createRateLimiter(db, opts), createRateLimiter(other, opts)], N);
    expect(busiestSecond(at)).toBeLessThanOrEqual(R + B);
    expect(at[N - 1]! - t0).toBeGreaterThanOrEqual(((N - B - 1) / R) * 1000);
    const rows = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger_rate_limits WHERE name = $1`, [name]);
    expect(rows.rows[0]!.n).toBe(1);
  } finally {
    await other.end();
  }
});

test('buckets of different names do not share tokens', async () => {
  const a = createRateLimiter(db, { name: uniqueId('a'), perSecond: 0.1, burst: 1, maxWaitMs: 0 });
  const b = createRateLimiter(db, { name: uniqueId('b'), perSecond: 0.1, burst: 1, maxWaitMs: 0 });
  expect(await a.acquire()).toBe(0);
  expect(await b.acquire()).toBe(0);
  expect((await rejection(a.acquire())).type).toBe(LedgerFailure.RateLimited);
});

test('a turn further away than maxWaitMs is refused, retryable, and takes no token', async () => {
  const name = uniqueId('refuse');
  // 1/s, burst 1: the 1st goes now, the 2nd waits 1 s, the 3rd would wait 2 s > 1.5 s.
  const limiter = createRateLimiter(db, { name, perSecond: 1, burst: 1, maxWaitMs: 1500 });
  expect(await limiter.acquire()).toBe(0);
  const second = new AbortController();
  const waiting = limiter.acquire(second.signal).catch((err: unknown) => err);
  const before = await until(() => bucket(name), (r) => r !== undefined && r.tokens < -0.5, 'the second acquire took its token');

  const refused = await rejection(limiter.acquire());
  expect({ type: refused.type, nonRetryable: refused.nonRetryable }).toEqual({ type: LedgerFailure.RateLimited, nonRetryable: false });
  expect(refused.message).toMatch(/1500 ms/);
  expect(await bucket(name)).toEqual(before);

  second.abort(new Error('test over'));
  await waiting;
});

test('maxWaitMs 0: only a token at hand', async () => {
  const name = uniqueId('now');
  const limiter = createRateLimiter(db, { name, perSecond: 0.01, burst: 2, maxWaitMs: 0 });
  expect(await limiter.acquire()).toBe(0);
  expect(await limiter.acquire()).toBe(0);
  const before = await bucket(name);
  expect((await rejection(limiter.acquire())).type).toBe(LedgerFailure.RateLimited);
  expect(await bucket(name)).toEqual(before);
});

test('a signal ends the wait with its reason; an aborted signal takes no token', async () => {
  const name = uniqueId('abort');
  const limiter = createRateLimiter(db, { name, perSecond: 0.05, burst: 1 }); // the 2nd turn is 20 s away
  expect(await limiter.acquire()).toBe(0);
  const ctl = new AbortController();
  const waiting = limiter.acquire(ctl.signal);
  await until(() => bucket(name), (r) => r !== undefined && r.tokens < -0.5, 'the second acquire took its token');
  const reason = new Error('activity cancelled');
  ctl.abort(reason);
  await expect(waiting).rejects.toBe(reason);

  const unused = uniqueId('aborted');
  const gone = new AbortController();
  gone.abort(reason);
  await expect(createRateLimiter(db, { name: unused, perSecond: 1 }).acquire(gone.signal)).rejects.toBe(reason);
  expect(await bucket(unused)).toBeUndefined();
});

test('options out of range are refused, naming what is wrong', () => {
  const make = (o: Partial<RateLimiterOptions>) => () => createRateLimiter(db, { name: 'bad', perSecond: 1, ...o } as RateLimiterOptions);
  for (const perSecond of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '5' as unknown as number]) {
    expect(make({ perSecond })).toThrow(/perSecond must be a positive finite number/);
  }
  for (const burst of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    expect(make({ burst })).toThrow(/burst must be an integer >= 1/);
  }
  for (const maxWaitMs of [-1, Number.NaN]) {
    expect(make({ maxWaitMs })).toThrow(/maxWaitMs must be a number >= 0/);
  }
  expect(make({ name: '' })).toThrow(/name must be a non-empty string/);
  expect(make({ perSecond: 0 })).toThrow(RangeError);
});

test('the default burst is one second of the rate, at least 1', () => {
  expect(createRateLimiter(db, { name: 'x', perSecond: 2.5 }).burst).toBe(3);
  expect(createRateLimiter(db, { name: 'x', perSecond: 0.2 }).burst).toBe(1);
});

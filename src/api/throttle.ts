import { isIPv6 } from 'node:net';

/**
 * Throttling at the API's door, in each API process's memory: a token bucket per API client,
 * and a count of failed authentications per source address. Both are bounded (idle entries are
 * swept, the maps capped), answer in constant time, and never fail a request by themselves.
 * With several API processes, each keeps its own: the limits are per process.
 */

/** Entries each map holds at most; past it, idle entries go first, then the least recently used. */
export const MAX_TRACKED = 10_000;

type Clock = () => number;
const monotonic: Clock = () => performance.now();

/** Seconds for a Retry-After header: whole, at least 1. */
const retryAfterSeconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/** Touches `key` in a map kept in least-recently-used order, evicting first what `idle` says is idle, then the oldest. */
function touch<V>(map: Map<string, V>, key: string, value: V, max: number, idle: (v: V) => boolean): void {
  map.delete(key);
  if (map.size >= max) {
    for (const [k, v] of map) if (idle(v)) map.delete(k);
    // Still full of live entries: forget the least recently used (a client gets a fresh bucket, a source a fresh count).
    for (const k of map.keys()) {
      if (map.size < max) break;
      map.delete(k);
    }
  }
  map.set(key, value);
}

/**
 * A token bucket per key (an API client): `perSecond` tokens flow in, up to `burst`; a request
 * takes one. Full buckets are the same as none, so they are what the sweep drops.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly max = MAX_TRACKED,
    private readonly now: Clock = monotonic,
  ) {
    if (!(perSecond > 0) || !(burst >= 1)) throw new Error('TokenBuckets: perSecond > 0 and burst >= 1');
  }

  /** Takes a token for `key`: 0 if it had one, else the seconds until it will (for Retry-After). */
  take(key: string): number {
    const now = this.now();
    const b = this.buckets.get(key);
    const tokens = b ? Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond) : this.burst;
    if (tokens >= 1) {
      touch(this.buckets, key, { tokens: tokens - 1, at: now }, this.max, (v) => this.full(v, now));
      return 0;
    }
    touch(this.buckets, key, { tokens, at: now }, this.max, (v) => this.full(v, now));
    return retryAfterSeconds(((1 - tokens) / this.perSecond) * 1000);
  }

  /** Drops the buckets that have filled up again. */
  sweep(): void {
    const now = this.now();
    for (const [k, v] of this.buckets) if (this.full(v, now)) this.buckets.delete(k);
  }

  get size(): number {
    return this.buckets.size;
  }

  private full(b: { tokens: number; at: number }, now: number): boolean {
    return b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst;
  }
}

/**
 * What admit() decided: go ahead and settle() when the key's lookup ends (true: the key is a
 * client's; false: unknown or revoked; undefined: the lookup itself failed, which says nothing
 * about the key), or wait that many seconds.
 */
export type Admission = { retryAfterSeconds: 0; settle(authenticated: boolean | undefined): void } | { retryAfterSeconds: number };

interface Source {
  failures: number;
  /** When the first failure of the window was (ms on the clock). */
  since: number;
  /** 0, or until when the source is refused. */
  blockedUntil: number;
  /** Key hashes being looked up for this source now, with how many requests wait on each. */
  pending: Map<string, number>;
}

/**
 * Failed authentications per source. `limit` of them within `windowMs` (counted from the
 * first) and the source is refused for `windowMs`, before its keys are looked up. Lookups in
 * flight count against the limit as they go (distinct keys only), so a burst of wrong keys
 * sent at once reaches the database `limit` times at most, not once per request.
 *
 * A key that authenticated in this process lately still goes to its lookup while its source
 * is refused, so a blocked address does not lock out a client that was working from it; any
 * other key, valid or not, waits. A success does not clear the count: one valid key must not
 * buy another round of guesses.
 */
export class FailedAuthentications {
  private readonly sources = new Map<string, Source>();
  /** Hashes of keys that authenticated lately, least recently used first. */
  private readonly good = new Map<string, true>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly max = MAX_TRACKED,
    private readonly now: Clock = monotonic,
  ) {
    if (!(limit >= 1) || !(windowMs > 0)) throw new Error('FailedAuthentications: limit >= 1 and windowMs > 0');
  }

  /**
   * Whether the key with this hash, sent from `source`, may be looked up now. `keyHash`
   * undefined: a malformed key, never looked up, refused as any other while the source is.
   */
  admit(source: string, keyHash: string | undefined): Admission {
    const now = this.now();
    const s = this.sources.get(source);
    // Its block, or the window of its failures, is over: a fresh start.
    if (s && (s.blockedUntil > 0 ? s.blockedUntil <= now : now - s.since > this.windowMs)) Object.assign(s, { failures: 0, since: now, blockedUntil: 0 });
    if (keyHash !== undefined && this.good.has(keyHash)) return { retryAfterSeconds: 0, settle: (ok) => ok !== undefined && this.settled(source, keyHash, ok) };
    if (s?.blockedUntil) return { retryAfterSeconds: retryAfterSeconds(s.blockedUntil - now) };
    if (keyHash === undefined) return { retryAfterSeconds: 0, settle: () => undefined };
    const joins = s?.pending.has(keyHash) ?? false;
    if (s && !joins && s.failures + s.pending.size >= this.limit) return { retryAfterSeconds: retryAfterSeconds(this.windowMs) };
    const entry = s ?? this.track(source, now);
    entry.pending.set(keyHash, (entry.pending.get(keyHash) ?? 0) + 1);
    let done = false;
    return {
      retryAfterSeconds: 0,
      settle: (ok) => {
        if (done) return;
        done = true;
        const left = (entry.pending.get(keyHash) ?? 1) - 1;
        if (left > 0) entry.pending.set(keyHash, left);
        else entry.pending.delete(keyHash);
        if (ok !== undefined) this.settled(source, keyHash, ok);
      },
    };
  }

  private track(source: string, now: number): Source {
    const s: Source = { failures: 0, since: now, blockedUntil: 0, pending: new Map() };
    touch(this.sources, source, s, this.max, (v) => this.idle(v, now));
    return s;
  }

  private settled(source: string, keyHash: string, authenticated: boolean): void {
    if (authenticated) {
      touch(this.good, keyHash, true, this.max, () => false);
      return;
    }
    const now = this.now();
    const s = this.sources.get(source) ?? this.track(source, now);
    if (s.failures === 0 || now - s.since > this.windowMs) Object.assign(s, { failures: 0, since: now });
    s.failures += 1;
    if (s.failures >= this.limit && !s.blockedUntil) s.blockedUntil = now + this.windowMs;
  }

  /** Drops the sources whose window and block have both run out. */
  sweep(): void {
    const now = this.now();
    for (const [k, v] of this.sources) if (this.idle(v, now)) this.sources.delete(k);
  }

  /** Sources tracked now. */
  get size(): number {
    return this.sources.size;
  }

  private idle(s: Source, now: number): boolean {
    return s.pending.size === 0 && s.blockedUntil <= now && now - s.since > this.windowMs;
  }
}

/**
 * The source a request is counted against: its IPv4 address, or the /64 an IPv6 address is in
 * (one host commonly holds a whole /64, so counting single addresses would count nothing).
 */
export function sourceOf(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  const bare = address.replace(/%.*$/, '');
  if (!isIPv6(bare)) return address;
  const [head = '', tail] = bare.split('::');
  const groups = (part: string) => (part ? part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

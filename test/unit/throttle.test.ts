/**
 * The API's throttles (src/api/throttle.ts) on a clock the test moves: the token bucket per
 * client, the failed-authentication count per address, their bounded memory, and the address
 * a request is counted against.
 */
import { FailedAuthentications, sourceOf, TokenBuckets, type Admission } from '../../src/api/throttle';

function clock() {
  let t = 1_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const settle = (a: Admission, ok: boolean | undefined) => {
  if (!('settle' in a)) throw new Error(`refused for ${a.retryAfterSeconds} s`);
  a.settle(ok);
};

describe('TokenBuckets', () => {
  test('a burst, then refused with the seconds until a token flows back; other keys untouched', () => {
    const c = clock();
    const b = new TokenBuckets(2, 3, 100, c.now);
    expect([b.take('a'), b.take('a'), b.take('a')]).toEqual([0, 0, 0]);
    expect(b.take('a')).toBe(1);
    expect(b.take('b')).toBe(0);
    c.advance(500);
    expect(b.take('a')).toBe(0);
    expect(b.take('a')).toBe(1);
  });

  test('Retry-After rounds up to whole seconds for a slow rate', () => {
    const c = clock();
    const b = new TokenBuckets(0.1, 1, 100, c.now);
    expect(b.take('a')).toBe(0);
    expect(b.take('a')).toBe(10);
    c.advance(9_500);
    expect(b.take('a')).toBe(1);
  });

  test('memory is bounded: full buckets are swept, and past the cap the idle go first, then the oldest', () => {
    const c = clock();
    const b = new TokenBuckets(1, 2, 3, c.now);
    for (const k of ['a', 'b', 'c']) b.take(k);
    expect(b.size).toBe(3);
    c.advance(1_000);
    b.sweep();
    expect(b.size).toBe(0);
    for (const k of ['a', 'b', 'c', 'd', 'e']) b.take(k);
    expect(b.size).toBe(3);
  });
});

describe('FailedAuthentications', () => {
  test('after `limit` failures the address is refused for the window, ahead of any lookup, then served again', () => {
    const c = clock();
    const f = new FailedAuthentications(3, 10_000, 100, c.now);
    for (let i = 0; i < 3; i++) settle(f.admit('1.2.3.4', `bad${i}`), false);
    expect(f.admit('1.2.3.4', 'bad9')).toEqual({ retryAfterSeconds: 10 });
    expect(f.admit('1.2.3.4', undefined)).toEqual({ retryAfterSeconds: 10 });
    // Another address is not touched.
    settle(f.admit('5.6.7.8', 'good'), true);
    c.advance(10_000);
    const again = f.admit('1.2.3.4', 'bad9');
    expect(again.retryAfterSeconds).toBe(0);
  });

  test('lookups in flight count: a burst of distinct wrong keys reaches the lookup `limit` times at most; the same key joins', () => {
    const c = clock();
    const f = new FailedAuthentications(5, 60_000, 100, c.now);
    const admitted = Array.from({ length: 1000 }, (_, i) => f.admit('src', `k${i}`)).filter((a) => a.retryAfterSeconds === 0);
    expect(admitted).toHaveLength(5);
    expect(f.admit('src', 'k3').retryAfterSeconds).toBe(0);
    for (const a of admitted) settle(a, false);
    expect(f.admit('src', 'k3').retryAfterSeconds).toBe(60);
  });

  test('a key that authenticated lately is still looked up while its address is refused; a success does not clear the count', () => {
    const c = clock();
    const f = new FailedAuthentications(2, 5_000, 100, c.now);
    settle(f.admit('src', 'valid'), true);
    settle(f.admit('src', 'bad1'), false);
    settle(f.admit('src', 'valid'), true);
    settle(f.admit('src', 'bad2'), false);
    expect(f.admit('src', 'another-valid-never-seen').retryAfterSeconds).toBe(5);
    expect(f.admit('src', 'valid').retryAfterSeconds).toBe(0);
  });

  test('a lookup that failed (database down) counts for nothing', () => {
    const c = clock();
    const f = new FailedAuthentications(1, 5_000, 100, c.now);
    settle(f.admit('src', 'k'), undefined);
    expect(f.admit('src', 'k').retryAfterSeconds).toBe(0);
  });

  test('failures spread wider than the window never block', () => {
    const c = clock();
    const f = new FailedAuthentications(3, 1_000, 100, c.now);
    for (let i = 0; i < 10; i++) {
      settle(f.admit('src', `bad${i}`), false);
      c.advance(600);
    }
    expect(f.admit('src', 'bad').retryAfterSeconds).toBe(0);
  });

  test('memory is bounded: past the cap, idle addresses go first, then the least recently used; the sweep drops the idle', () => {
    const c = clock();
    const f = new FailedAuthentications(2, 1_000, 3, c.now);
    for (const s of ['a', 'b', 'c', 'd', 'e']) settle(f.admit(s, 'bad'), false);
    expect(f.size).toBe(3);
    c.advance(1_001);
    f.sweep();
    expect(f.size).toBe(0);
  });
});

test.each([
  ['127.0.0.1', '127.0.0.1'],
  ['::ffff:10.1.2.3', '10.1.2.3'],
  ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
  ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
  ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
  ['::1', '0:0:0:0::/64'],
  ['fe80::1%eth0', 'fe80:0:0:0::/64'],
  [undefined, 'unknown'],
])('sourceOf(%s) is %s', (address, source) => {
  expect(sourceOf(address)).toBe(source);
});

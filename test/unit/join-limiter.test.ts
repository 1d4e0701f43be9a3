import { joinLimiterKey, MemoryJoinRateLimiter, type JoinRateLimiter } from '../../src/broker/join-limiter';

const T0 = 1_700_000_000_000;

function fail(l: JoinRateLimiter, ip: string, times: number, now: number): void {
  for (let i = 0; i < times; i++) l.recordFailure(ip, now);
}

describe('joinLimiterKey', () => {
  test.each([
    ['1.2.3.4', '1.2.3.4'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['::FFFF:1.2.3.4', '1.2.3.4'],
    ['::ffff:0102:0304', '1.2.3.4'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
  ])('%s → %s', (ip, key) => {
    expect(joinLimiterKey(ip)).toBe(key);
  });

  test('non-addresses are keyed as given (bounded)', () => {
    expect(joinLimiterKey('not an ip')).toBe('other:not an ip');
    expect(joinLimiterKey('1.2.3')).toBe('other:1.2.3');
    expect(joinLimiterKey('x'.repeat(10_000)).length).toBeLessThan(200);
    expect(joinLimiterKey(undefined as unknown as string)).toBe('other:');
  });
});

describe('MemoryJoinRateLimiter', () => {
  test('defaults: 10 failures in a minute block for a minute', () => {
    const l = new MemoryJoinRateLimiter();
    expect(l.check('1.2.3.4', T0)).toEqual({ allowed: true, retryAfterMs: 0 });
    fail(l, '1.2.3.4', 9, T0);
    expect(l.check('1.2.3.4', T0)).toEqual({ allowed: true, retryAfterMs: 0 });
    l.recordFailure('1.2.3.4', T0 + 1000);
    expect(l.check('1.2.3.4', T0 + 1000)).toEqual({ allowed: false, retryAfterMs: 60_000 });
    expect(l.check('1.2.3.4', T0 + 31_000)).toEqual({ allowed: false, retryAfterMs: 30_000 });
    expect(l.check('1.2.3.4', T0 + 60_999)).toEqual({ allowed: false, retryAfterMs: 1 });
    expect(l.check('1.2.3.4', T0 + 61_000)).toEqual({ allowed: true, retryAfterMs: 0 });
    // other addresses are unaffected
    expect(l.check('1.2.3.5', T0 + 1000)).toEqual({ allowed: true, retryAfterMs: 0 });
  });

  test('after a block expires the count starts from zero', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 3, windowMs: 10_000, blockMs: 5_000 });
    fail(l, '9.9.9.9', 3, T0);
    expect(l.check('9.9.9.9', T0).allowed).toBe(false);
    fail(l, '9.9.9.9', 2, T0 + 5_000);
    expect(l.check('9.9.9.9', T0 + 5_000).allowed).toBe(true);
    l.recordFailure('9.9.9.9', T0 + 5_001);
    expect(l.check('9.9.9.9', T0 + 5_001)).toEqual({ allowed: false, retryAfterMs: 5_000 });
  });

  test('failures are counted in a sliding window (no burst across a window boundary)', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 5, windowMs: 10_000, blockMs: 1_000 });
    const ip = '10.0.0.1';
    fail(l, ip, 4, T0 + 9_000); // end of a "window" that started at T0
    l.recordFailure(ip, T0 + 10_500); // a fixed window would have reset here
    expect(l.check(ip, T0 + 10_500).allowed).toBe(false);
  });

  test('old failures age out of the window', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 3, windowMs: 10_000, blockMs: 1_000 });
    const ip = '10.0.0.2';
    l.recordFailure(ip, T0);
    l.recordFailure(ip, T0 + 5_000);
    l.recordFailure(ip, T0 + 10_000); // the first one has just aged out
    expect(l.check(ip, T0 + 10_000).allowed).toBe(true);
    l.recordFailure(ip, T0 + 11_000);
    expect(l.check(ip, T0 + 11_000).allowed).toBe(false);
  });

  test('failures while blocked do not extend the block', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 2, windowMs: 10_000, blockMs: 10_000 });
    fail(l, '8.8.8.8', 2, T0);
    fail(l, '8.8.8.8', 5, T0 + 9_000);
    expect(l.check('8.8.8.8', T0 + 9_000)).toEqual({ allowed: false, retryAfterMs: 1_000 });
    expect(l.check('8.8.8.8', T0 + 10_000).allowed).toBe(true);
  });

  test('a success does not forgive failures (anyone can succeed on their own session)', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 4 });
    const ip = '7.7.7.7';
    for (let round = 0; round < 3; round++) {
      l.recordFailure(ip, T0 + round);
      l.recordSuccess(ip, T0 + round);
    }
    expect(l.check(ip, T0 + 10).allowed).toBe(true);
    l.recordFailure(ip, T0 + 10);
    expect(l.check(ip, T0 + 10).allowed).toBe(false);
    // and a success does not lift a block
    l.recordSuccess(ip, T0 + 11);
    expect(l.check(ip, T0 + 11).allowed).toBe(false);
  });

  test('a success does not create tracking state', () => {
    const l = new MemoryJoinRateLimiter();
    for (let i = 0; i < 100; i++) l.recordSuccess(`10.1.0.${i}`, T0);
    expect(l.size).toBe(0);
  });

  test('expired entries are forgotten', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 2, windowMs: 1_000, blockMs: 1_000 });
    l.recordFailure('1.1.1.1', T0);
    fail(l, '2.2.2.2', 2, T0);
    expect(l.size).toBe(2);
    l.check('1.1.1.1', T0 + 2_000);
    l.recordSuccess('2.2.2.2', T0 + 2_000);
    expect(l.size).toBe(0);
  });

  test('IPv4-mapped IPv6 shares the IPv4 budget', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 4 });
    fail(l, '192.0.2.7', 2, T0);
    fail(l, '::ffff:192.0.2.7', 2, T0);
    expect(l.check('192.0.2.7', T0).allowed).toBe(false);
    expect(l.check('::ffff:192.0.2.7', T0).allowed).toBe(false);
    expect(l.check('192.0.2.8', T0).allowed).toBe(true);
  });

  test('IPv6 addresses are grouped by /64', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 4 });
    for (let i = 1; i <= 4; i++) l.recordFailure(`2001:db8:aa:bb::${i.toString(16)}`, T0);
    expect(l.check('2001:db8:aa:bb:ffff:ffff:ffff:ffff', T0).allowed).toBe(false);
    expect(l.check('2001:db8:aa:bc::1', T0).allowed).toBe(true); // neighbouring /64
  });

  test('tracks at most maxTrackedIps addresses, evicting the least recently seen', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 2, maxTrackedIps: 3 });
    l.recordFailure('10.0.0.1', T0);
    l.recordFailure('10.0.0.2', T0 + 1);
    l.recordFailure('10.0.0.3', T0 + 2);
    l.recordFailure('10.0.0.1', T0 + 3); // .1 blocked and now most recent
    expect(l.check('10.0.0.1', T0 + 3).allowed).toBe(false);
    l.recordFailure('10.0.0.4', T0 + 4); // evicts .2 (least recently seen)
    expect(l.size).toBe(3);
    l.recordFailure('10.0.0.2', T0 + 5); // .2 starts over: 1 failure, not 2 (evicts .3)
    expect(l.check('10.0.0.2', T0 + 5).allowed).toBe(true);
    expect(l.check('10.0.0.1', T0 + 5).allowed).toBe(false); // still remembered
    l.recordFailure('10.0.0.3', T0 + 6); // .3 was evicted: 1 failure again
    expect(l.check('10.0.0.3', T0 + 6).allowed).toBe(true);
    expect(l.size).toBe(3);

    const big = new MemoryJoinRateLimiter({ maxTrackedIps: 100 });
    for (let i = 0; i < 5_000; i++) big.recordFailure(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, T0);
    expect(big.size).toBe(100);
  });

  test('rejects nonsensical options', () => {
    expect(() => new MemoryJoinRateLimiter({ maxFailures: 0 })).toThrow(RangeError);
    expect(() => new MemoryJoinRateLimiter({ windowMs: -1 })).toThrow(RangeError);
    expect(() => new MemoryJoinRateLimiter({ blockMs: Number.NaN })).toThrow(RangeError);
    expect(() => new MemoryJoinRateLimiter({ maxTrackedIps: Infinity })).toThrow(RangeError);
  });

  test('now defaults to the clock', () => {
    const l = new MemoryJoinRateLimiter({ maxFailures: 1, blockMs: 60_000 });
    l.recordFailure('3.3.3.3');
    const r = l.check('3.3.3.3');
    expect(r.allowed).toBe(false);
    expect(r.retryAfterMs).toBeGreaterThan(50_000);
    expect(r.retryAfterMs).toBeLessThanOrEqual(60_000);
  });
});

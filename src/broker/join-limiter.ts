/**
 * Rate limiting of failed joins (wrong session code, rejected helper key) per
 * source address. Codes have 105 bits, so guessing is hopeless anyway; this keeps
 * a hostile client from burning CPU and filling logs, and makes any brute force
 * visibly blocked. Behind an interface so a shared (e.g. Redis) store can be
 * used when several brokers sit behind one address.
 */
import * as net from 'node:net';
import ipaddr from 'ipaddr.js';

/** The limiter contract. `now` (ms since epoch) is injectable for tests. */
export interface JoinRateLimiter {
  /** May this address try to join now? If not, `retryAfterMs` says for how long it stays blocked. */
  check(ip: string, now?: number): { allowed: boolean; retryAfterMs: number };
  /** Count one failed join from this address. */
  recordFailure(ip: string, now?: number): void;
  /** Note a successful join from this address. */
  recordSuccess(ip: string, now?: number): void;
}

/** Options of {@link MemoryJoinRateLimiter}. */
export interface MemoryJoinRateLimiterOptions {
  /** Failures within `windowMs` that trigger a block (default 10). */
  maxFailures?: number;
  /** Sliding window the failures are counted in (default 60 s). */
  windowMs?: number;
  /** How long an address stays blocked (default 60 s). */
  blockMs?: number;
  /** Addresses tracked at most; the least recently seen is evicted first (default 10 000). */
  maxTrackedIps?: number;
}

/**
 * The key an address is limited under: IPv4-mapped IPv6 (`::ffff:1.2.3.4`)
 * counts as the IPv4 address, any other IPv6 address as its /64 (one host or
 * customer usually owns a whole /64, so per-address limits would be free to dodge),
 * zone ids are dropped. Anything that is not an IP address is used as given.
 */
export function joinLimiterKey(ip: string): string {
  const raw = String(ip ?? '').trim();
  const noZone = raw.replace(/%.*$/, '');
  if (net.isIP(noZone) === 0) return `other:${raw.slice(0, 128)}`;
  const addr = ipaddr.process(noZone);
  if (addr.kind() === 'ipv4') return addr.toString();
  const parts = (addr as ipaddr.IPv6).parts.slice(0, 4);
  return `${parts.map((p) => p.toString(16)).join(':')}::/64`;
}

interface Entry {
  /** Timestamps of recent failures (at most maxFailures, oldest first). */
  failures: number[];
  /** Blocked until this time (0 = not blocked). */
  blockedUntil: number;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number, got ${value}`);
  return value;
}

/**
 * In-process limiter. Failures are counted in a sliding window per key (see
 * {@link joinLimiterKey}); reaching `maxFailures` blocks the key for `blockMs`.
 *
 * A success does NOT forgive earlier failures: anyone can open a session of
 * their own, so interleaving a valid join would otherwise reset the counter and
 * allow unlimited guessing. Honest users who mistype a few times never reach the
 * limit anyway. Memory is bounded by `maxTrackedIps` (least recently touched
 * evicted first) and entries with nothing left to remember are dropped.
 */
export class MemoryJoinRateLimiter implements JoinRateLimiter {
  private readonly maxFailures: number;
  private readonly windowMs: number;
  private readonly blockMs: number;
  private readonly maxTrackedIps: number;
  /** Map iteration order = least recently touched first. */
  private readonly entries = new Map<string, Entry>();

  constructor(opts: MemoryJoinRateLimiterOptions = {}) {
    this.maxFailures = Math.floor(positive(opts.maxFailures, 10, 'maxFailures'));
    this.windowMs = positive(opts.windowMs, 60_000, 'windowMs');
    this.blockMs = positive(opts.blockMs, 60_000, 'blockMs');
    this.maxTrackedIps = Math.floor(positive(opts.maxTrackedIps, 10_000, 'maxTrackedIps'));
  }

  /** Number of keys currently tracked (for metrics and tests). */
  get size(): number {
    return this.entries.size;
  }

  check(ip: string, now: number = Date.now()): { allowed: boolean; retryAfterMs: number } {
    const key = joinLimiterKey(ip);
    const entry = this.entries.get(key);
    if (!entry) return { allowed: true, retryAfterMs: 0 };
    if (entry.blockedUntil > now) return { allowed: false, retryAfterMs: entry.blockedUntil - now };
    this.prune(key, entry, now);
    return { allowed: true, retryAfterMs: 0 };
  }

  recordFailure(ip: string, now: number = Date.now()): void {
    const key = joinLimiterKey(ip);
    const entry = this.entries.get(key) ?? { failures: [], blockedUntil: 0 };
    // Re-insert so this key becomes the most recently touched.
    this.entries.delete(key);
    this.entries.set(key, entry);
    if (entry.blockedUntil > now) return; // already blocked; the block is not extended
    entry.blockedUntil = 0;
    entry.failures = entry.failures.filter((t) => now - t < this.windowMs);
    entry.failures.push(now);
    if (entry.failures.length >= this.maxFailures) {
      entry.blockedUntil = now + this.blockMs;
      entry.failures = [];
    }
    while (this.entries.size > this.maxTrackedIps) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  recordSuccess(ip: string, now: number = Date.now()): void {
    // Deliberately no forgiveness (see class doc); only housekeeping.
    const key = joinLimiterKey(ip);
    const entry = this.entries.get(key);
    if (entry) this.prune(key, entry, now);
  }

  /** Drop expired failures and an expired block; forget the key if nothing is left. */
  private prune(key: string, entry: Entry, now: number): void {
    if (entry.blockedUntil !== 0 && entry.blockedUntil <= now) entry.blockedUntil = 0;
    entry.failures = entry.failures.filter((t) => now - t < this.windowMs);
    if (entry.blockedUntil === 0 && entry.failures.length === 0) this.entries.delete(key);
  }
}

/**
 * Batched random padding for ssh2.
 *
 * ssh2 fills each outgoing packet's padding (4 to 255 bytes) with its own call to
 * `crypto.randomFillSync`. Each call builds a native job and enters OpenSSL's
 * RAND_bytes, which costs a few microseconds: 8-13 % of the broker's CPU in a
 * bulk transfer, 5-7 % in connection setup (CPU profiles in docs/performance.md),
 * since every SSH packet pays it.
 *
 * `installRandomPool()` wraps `crypto.randomFillSync` so that small fills are
 * copied from a pool that is itself filled by the original function 16 KiB at a
 * time. The bytes come from the same CSPRNG, each is handed out once, and calls
 * that are not small fills of a byte array go straight to the original. It must
 * run before ssh2 is loaded, because ssh2 binds `randomFillSync` when its
 * crypto module loads; the `bin/` entry points and the package index call it
 * first.
 */
import crypto from 'node:crypto';

/** Largest fill served from the pool (SSH padding is at most 255 bytes). */
export const POOL_MAX_FILL = 256;
const POOL_SIZE = 16 * 1024;

const INSTALLED = Symbol.for('remote-assist.randomPool');

type RandomFillSync = typeof crypto.randomFillSync;

/** A pool of CSPRNG bytes handed out once each, refilled in bulk by `fill`. */
export class RandomPool {
  private readonly pool: Buffer;
  private offset: number;

  constructor(
    private readonly fill: (buf: Buffer) => void,
    size = POOL_SIZE,
  ) {
    this.pool = Buffer.allocUnsafeSlow(size);
    this.offset = size; // empty: the first take refills
  }

  /** Copy `size` fresh random bytes into `target` at `offset`. */
  take(target: Uint8Array, offset: number, size: number): void {
    if (size > this.pool.length) throw new RangeError(`pool fill of ${size} bytes exceeds the pool`);
    if (this.offset + size > this.pool.length) {
      this.fill(this.pool);
      this.offset = 0;
    }
    this.pool.copy(target, offset, this.offset, this.offset + size);
    this.pool.fill(0, this.offset, this.offset + size); // handed out once: never left readable
    this.offset += size;
  }
}

/**
 * Make small `crypto.randomFillSync(buf, offset, size)` calls draw from a pool.
 * Idempotent; returns true if this call installed it.
 */
export function installRandomPool(): boolean {
  const mod = crypto as unknown as { randomFillSync: RandomFillSync & { [INSTALLED]?: true } };
  if (mod.randomFillSync[INSTALLED]) return false;
  const original = mod.randomFillSync;
  const pool = new RandomPool((buf) => original(buf));
  const pooled = function randomFillSync(buf: unknown, offset?: unknown, size?: unknown) {
    if (
      buf instanceof Uint8Array &&
      typeof offset === 'number' &&
      typeof size === 'number' &&
      Number.isInteger(offset) &&
      Number.isInteger(size) &&
      size > 0 &&
      size <= POOL_MAX_FILL &&
      offset >= 0 &&
      offset + size <= buf.length
    ) {
      pool.take(buf, offset, size);
      return buf;
    }
    return (original as (...args: unknown[]) => unknown).call(crypto, ...arguments);
  } as RandomFillSync & { [INSTALLED]?: true };
  pooled[INSTALLED] = true;
  mod.randomFillSync = pooled;
  return true;
}

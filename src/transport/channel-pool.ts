/**
 * A small pool of pre-opened SSH channels. Opening a channel costs a round trip;
 * keeping a few open and idle means a new stream can start with its first write,
 * which is what brings connection setup down to one end-to-end round trip.
 * Channels the peer closes while idle are dropped and replaced a second later. The
 * pool refills in the background after each take, just after the taker's first
 * write: the peer then reads the SOCKS request before the new channel's open, and
 * both still leave in the same flush of the corked SSH socket (one write).
 *
 * The pool follows demand: a web page opens a burst of connections at once, and
 * every one beyond what is ready waits for its own channel open (over a WAN one more
 * round trip on each leg). A take that leaves fewer than half of the pool ready (the
 * burst is draining it faster than it refills; an empty pool is the extreme case)
 * raises the number kept ready by two, up to `max`, so the next burst is served from
 * the pool. Counting only empty takes was not enough: a pool whose refills land
 * during the burst rarely runs empty and never learned (through the emulated WAN, the
 * second burst of 16 still had 8 connections at 2.1 round trips). Sequential streams
 * never drain it below half. Once
 * no take has drained it for `decayMs`, the number halves (never below `size`) and the
 * surplus idle channels are closed, so an idle session goes back to its few channels.
 */
import type { Duplex } from 'node:stream';

/** How long after the peer closed an idle channel the pool tops itself up again. */
export const REFILL_AFTER_DROP_MS = 1000;

export interface ChannelPoolOptions {
  /** Most channels ever kept ready (default: `size`, i.e. a fixed pool). */
  max?: number;
  /** Quiet time (no take that drained it below half) before the pool shrinks by half towards `size`. */
  decayMs?: number;
}

export class ChannelPool<T extends Duplex> {
  private readonly idle: T[] = [];
  private pending = 0;
  private closed = false;
  private refillQueued = false;
  /** How many channels are kept ready now: between `size` and `max`. */
  private target: number;
  private readonly max: number;
  private readonly decayMs: number;
  private lastGrowth = 0;
  private decayTimer: NodeJS.Timeout | undefined;
  private refillTimer: NodeJS.Timeout | undefined;

  constructor(private readonly openChannel: () => Promise<T>, private readonly size: number, opts: ChannelPoolOptions = {}) {
    this.target = size;
    this.max = Math.max(size, opts.max ?? size);
    this.decayMs = opts.decayMs ?? 30_000;
  }

  /** A ready channel: a pooled one if any, else a freshly opened one. Refills behind. */
  async take(): Promise<T> {
    let ch: T | undefined;
    while ((ch = this.idle.shift())) {
      if (!ch.destroyed && ch.writable && ch.readable) break;
    }
    if (!ch || this.idle.length < this.target / 2) this.grow();
    if (!this.refillQueued) {
      this.refillQueued = true;
      // The taker's continuation (which writes the request) is the next microtask, and an
      // empty pool's own open below is sent now; a nextTick queued from this microtask
      // runs after both, before the socket's own flush.
      queueMicrotask(() => process.nextTick(() => {
        this.refillQueued = false;
        this.fill();
      }));
    }
    return ch ?? this.openChannel();
  }

  /** Start keeping channels ready (`size` of them at first). */
  fill(): void {
    while (!this.closed && this.idle.length + this.pending < this.target) {
      this.pending++;
      this.openChannel().then(
        (ch) => {
          this.pending--;
          if (this.closed) return void ch.destroy();
          ch.on('error', () => { /* an idle channel failing is just dropped */ });
          this.idle.push(ch);
          ch.once('close', () => {
            const i = this.idle.indexOf(ch);
            if (i < 0) return;
            this.idle.splice(i, 1);
            this.refillLater();
          });
        },
        () => {
          // The peer refused: stop trying until the next take (no busy loop), and do not
          // ask for a grown pool's worth of channels on every take while it refuses.
          this.pending--;
          this.target = this.size;
        },
      );
    }
  }

  /** How many channels are idle and ready. */
  get ready(): number {
    return this.idle.length;
  }

  /** How many channels the pool keeps ready now (grows with bursts, shrinks when quiet). */
  get capacity(): number {
    return this.target;
  }

  /** Destroy idle channels and stop refilling. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.decayTimer) clearTimeout(this.decayTimer);
    this.decayTimer = undefined;
    if (this.refillTimer) clearTimeout(this.refillTimer);
    this.refillTimer = undefined;
    for (const ch of this.idle.splice(0)) ch.destroy();
  }

  /**
   * The peer closed an idle channel (the broker closes one unused for Timeouts.poolIdle):
   * top the pool up again, REFILL_AFTER_DROP_MS later, so an idle session's next
   * connection still finds channels ready, and a peer that closes every channel it
   * accepts costs one open per channel per interval, not a busy loop.
   */
  private refillLater(): void {
    if (this.closed || this.refillTimer) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      this.fill();
    }, REFILL_AFTER_DROP_MS);
    this.refillTimer.unref();
  }

  /** A take drained the pool below half: keep two more ready from now on. */
  private grow(): void {
    if (this.closed) return;
    this.lastGrowth = Date.now(); // still in demand: not the time to shrink
    if (this.target >= this.max) return;
    this.target = Math.min(this.max, this.target + 2);
    this.decayTimer ??= this.armDecay(this.decayMs);
  }

  private armDecay(ms: number): NodeJS.Timeout {
    const t = setTimeout(() => this.decay(), ms);
    t.unref();
    return t;
  }

  /** Quiet for `decayMs` since the pool last grew: halve towards `size`, closing idle extras. */
  private decay(): void {
    this.decayTimer = undefined;
    if (this.closed) return;
    const quietFor = Date.now() - this.lastGrowth;
    if (quietFor < this.decayMs) {
      this.decayTimer = this.armDecay(this.decayMs - quietFor);
      return;
    }
    this.target = Math.max(this.size, Math.ceil(this.target / 2));
    while (this.idle.length > 0 && this.idle.length + this.pending > this.target) this.idle.shift()!.destroy();
    if (this.target > this.size) this.decayTimer = this.armDecay(this.decayMs);
  }
}

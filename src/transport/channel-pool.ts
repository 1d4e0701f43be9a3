/**
 * A small pool of pre-opened SSH channels. Opening a channel costs a round trip;
 * keeping a few open and idle means a new stream can start with its first write,
 * which is what brings connection setup down to one end-to-end round trip.
 * Channels the peer closes while idle are dropped; the pool refills in the
 * background after each take, just after the taker's first write: the peer then
 * reads the SOCKS request before the new channel's open, and both still leave in
 * the same flush of the corked SSH socket (one write).
 */
import type { Duplex } from 'node:stream';

export class ChannelPool<T extends Duplex> {
  private readonly idle: T[] = [];
  private pending = 0;
  private closed = false;
  private refillQueued = false;

  constructor(private readonly openChannel: () => Promise<T>, private readonly size: number) {}

  /** A ready channel: a pooled one if any, else a freshly opened one. Refills behind. */
  async take(): Promise<T> {
    let ch: T | undefined;
    while ((ch = this.idle.shift())) {
      if (!ch.destroyed && ch.writable && ch.readable) break;
    }
    if (!ch) {
      this.fill();
      return this.openChannel();
    }
    if (!this.refillQueued) {
      this.refillQueued = true;
      // The taker's continuation (which writes the request) is the next microtask; a
      // nextTick queued from this one runs after it, before the socket's own flush.
      queueMicrotask(() => process.nextTick(() => {
        this.refillQueued = false;
        this.fill();
      }));
    }
    return ch;
  }

  /** Start keeping `size` channels ready. */
  fill(): void {
    while (!this.closed && this.idle.length + this.pending < this.size) {
      this.pending++;
      this.openChannel().then(
        (ch) => {
          this.pending--;
          if (this.closed) return void ch.destroy();
          ch.on('error', () => { /* an idle channel failing is just dropped */ });
          this.idle.push(ch);
          ch.once('close', () => {
            const i = this.idle.indexOf(ch);
            if (i >= 0) this.idle.splice(i, 1);
          });
        },
        () => {
          // The peer refused: stop trying until the next take (no busy loop).
          this.pending--;
        },
      );
    }
  }

  /** How many channels are idle and ready. */
  get ready(): number {
    return this.idle.length;
  }

  /** Destroy idle channels and stop refilling. Idempotent. */
  close(): void {
    this.closed = true;
    for (const ch of this.idle.splice(0)) ch.destroy();
  }
}

/**
 * A small pool of pre-opened SSH channels. Opening a channel costs a round trip;
 * keeping a few open and idle means a new stream can start with its first write,
 * which is what brings connection setup down to one end-to-end round trip.
 * Channels the peer closes while idle are dropped; the pool refills in the
 * background after each take. The refill waits for the next turn of the event
 * loop, so the taken channel's first bytes (the SOCKS request) leave before the
 * new channel's open, and the peer handles the request first.
 */
import type { Duplex } from 'node:stream';

export class ChannelPool<T extends Duplex> {
  private readonly idle: T[] = [];
  private pending = 0;
  private closed = false;
  private refill: NodeJS.Immediate | undefined;

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
    this.refill ??= setImmediate(() => {
      this.refill = undefined;
      this.fill();
    });
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
    if (this.refill) clearImmediate(this.refill);
    this.refill = undefined;
    for (const ch of this.idle.splice(0)) ch.destroy();
  }
}

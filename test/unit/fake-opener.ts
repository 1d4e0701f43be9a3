/**
 * Test double for the helper's StreamOpener: no SSH. Each target is routed by a
 * function to a local TCP port (a real connection, wrapped in a plain Duplex like
 * an ssh2 channel, so the front-ends' socket shims are exercised), a BrokerError,
 * or a hang until the caller aborts. It counts every stream it handed out and
 * which are still open, so tests can prove nothing leaked.
 */
import net from 'node:net';
import { Duplex } from 'node:stream';
import { BrokerError } from '../../src/errors';
import type { OpenedStream, StreamOpener } from '../../src/helper/stream-opener';
import { formatTarget, type Target } from '../../src/protocol/target';
import type { CancelSignal } from '../../src/transport/early-close';

export type Route =
  | { port: number; delayMs?: number }
  | { error: BrokerError; delayMs?: number }
  | { hang: true };

/** A Duplex over a socket that is *not* a net.Socket (like an ssh2 channel). */
export class ChannelLike extends Duplex {
  constructor(private readonly sock: net.Socket) {
    super({ allowHalfOpen: true });
    sock.on('data', (c: Buffer) => { if (!this.push(c)) sock.pause(); });
    sock.on('end', () => this.push(null));
    sock.on('error', (e) => this.destroy(e));
    sock.on('close', () => { if (!this.destroyed) this.destroy(); });
  }

  override _read(): void {
    this.sock.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sock.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.sock.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.sock.destroy();
    cb(err);
  }
}

export class FakeOpener implements StreamOpener {
  /** Every target asked for, in order. */
  readonly opened: string[] = [];
  /** Streams handed out and not yet closed. */
  readonly live = new Set<Duplex>();
  /** Opens started and not yet settled. */
  pending = 0;
  /** Highest pending + live seen at any time (concurrency). */
  maxInUse = 0;
  /** Signals that fired while an open was pending. */
  aborted = 0;

  constructor(private readonly route: (t: Target) => Route, private readonly opts: { channelLike?: boolean } = {}) {}

  get inUse(): number {
    return this.pending + this.live.size;
  }

  private bump(): void {
    this.maxInUse = Math.max(this.maxInUse, this.inUse);
  }

  async open(target: Target, signal?: CancelSignal): Promise<OpenedStream> {
    this.opened.push(formatTarget(target));
    this.pending++;
    this.bump();
    let settled = false;
    const settle = () => { if (!settled) { settled = true; this.pending--; } };
    try {
      const r = this.route(target);
      if ('hang' in r) {
        await new Promise<never>((_, reject) => {
          const fail = () => { this.aborted++; reject(new BrokerError('BRK_INTERNAL', 'aborted')); };
          if (signal?.aborted) return fail();
          signal?.addEventListener('abort', fail, { once: true });
        });
      }
      const route = r as { port?: number; error?: BrokerError; delayMs?: number };
      if (route.delayMs) await abortableDelay(route.delayMs, signal, () => this.aborted++);
      if (route.error) throw route.error;
      const sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: route.port! });
        s.once('connect', () => { s.off('error', reject); resolve(s); });
        s.once('error', (err: NodeJS.ErrnoException) => reject(new BrokerError(err.code === 'ECONNREFUSED' ? 'BRK_CONN_REFUSED' : 'BRK_INTERNAL', `${formatTarget(target)}: ${err.code}`)));
      });
      const stream: Duplex = this.opts.channelLike === false ? sock : new ChannelLike(sock);
      settle();
      this.live.add(stream);
      this.bump();
      stream.once('close', () => this.live.delete(stream));
      // count a stream as released the moment its user destroys it ('close' follows a tick later)
      const destroy = stream.destroy.bind(stream);
      stream.destroy = (err?: Error) => { this.live.delete(stream); return destroy(err); };
      return { stream, bound: { host: '127.0.0.1', port: sock.localPort ?? 0 } };
    } finally {
      settle();
    }
  }
}

function abortableDelay(ms: number, signal: CancelSignal | undefined, onAbort: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { signal?.removeEventListener('abort', abort); resolve(); }, ms);
    const abort = () => { clearTimeout(t); onAbort(); reject(new BrokerError('BRK_INTERNAL', 'aborted')); };
    if (signal?.aborted) return abort();
    signal?.addEventListener('abort', abort, { once: true });
  });
}

/** Poll until `cond()` holds (bounded); throws with `what` on timeout. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Listen on 127.0.0.1:0 and return the port. */
export async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

/** Close a server and every connection it still has. */
export function closeServer(server: net.Server & { closeAllConnections?: () => void }, sockets?: Set<net.Socket>): Promise<void> {
  for (const s of sockets ?? []) s.destroy();
  server.closeAllConnections?.();
  return new Promise((resolve) => server.close(() => resolve()));
}

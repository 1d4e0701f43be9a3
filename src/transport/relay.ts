/**
 * Bidirectional relay between two duplex streams (sockets or SSH channels).
 * - backpressure: the reader pauses while the writer's buffer is full (and, for SSH
 *   channels, while the connection's shared socket queue is long), so a slow reader
 *   never makes us buffer a whole download and one bulk stream cannot starve others;
 * - small before bulk: chunks of BULK_CHUNK bytes or more into an SSH channel go out
 *   at the end of the event-loop turn, so a small stream's reply read in the same
 *   turn (another helper's click during a download) is encrypted and sent first;
 * - half-close: EOF one way is forwarded while data keeps flowing the other way (also
 *   an EOF that came before the relay began);
 * - cleanup: when one side closes, the other is ended after flushing, then destroyed;
 *   an error on either side destroys both. The promise never rejects.
 */
import type { Duplex } from 'node:stream';

export interface RelayResult {
  /** Bytes that went from `a` to `b`. */
  aToB: number;
  /** Bytes that went from `b` to `a`. */
  bToA: number;
  /** First error seen on either side, if any (expected closes included). */
  error?: unknown;
  durationMs: number;
}

/** An ssh2 channel opened or accepted by an ssh2 *server*. */
interface ServerSideChannel extends Duplex {
  server: true;
  eof(): void;
}

function isServerSideChannel(s: Duplex): s is ServerSideChannel {
  const c = s as Partial<ServerSideChannel>;
  return c.server === true && typeof c.eof === 'function';
}

/**
 * Send EOF on `s` without closing its other direction. ssh2's server-side channels
 * send EOF *and* CLOSE on `end()`, which would kill the reverse direction, so for
 * them we flush pending writes (an empty write completes after all earlier ones)
 * and send only EOF; the final `end()` happens once both directions are done.
 */
export function halfClose(s: Duplex): void {
  if (s.destroyed || s.writableEnded) return;
  if (isServerSideChannel(s)) s.write(Buffer.alloc(0), () => s.eof());
  else s.end();
}

/**
 * Bytes an SSH connection's TCP socket may have queued in user space before
 * relays writing into its channels pause. ssh2 writes channel data to the socket
 * without looking at its buffer, so one bulk stream could queue up to its whole
 * window (2 MiB) in front of every other channel's packets; capping the shared
 * queue keeps small requests from waiting behind a download (fairness), and all
 * paused writers resume together on 'drain'.
 */
export const SSH_SOCKET_QUEUE_LIMIT = Number(process.env.BROKER_SOCKET_QUEUE ?? 256 * 1024);

/**
 * Bytes a relay may queue in an SSH channel waiting for the peer's window. ssh2's
 * channels accept up to 2 MiB before `write()` returns false, so without this a
 * stream whose window is used up would keep reading its source into memory.
 */
export const CHANNEL_QUEUE_LIMIT = Number(process.env.BROKER_CHANNEL_QUEUE ?? 64 * 1024);

/**
 * Chunks at least this large into an SSH channel are bulk and wait for the end of the
 * turn (BROKER_BULK_CHUNK; 0 sends every chunk at once). A/B during a download: the
 * other helper's tiny requests p50 -7 % in three pairs of runs, throughput unchanged.
 */
export const BULK_CHUNK = Number(process.env.BROKER_BULK_CHUNK ?? 16 * 1024);

/** The TCP socket under an ssh2 channel (client or server side), if `s` is one. */
function sshSocketOf(s: Duplex): Duplex | undefined {
  const c = s as unknown as { _client?: { _sock?: Duplex }; incoming?: unknown; outgoing?: unknown };
  if (c.incoming === undefined || c.outgoing === undefined) return undefined;
  return c._client?._sock;
}

interface Pump {
  bytes: number;
  /** Send what waits for the end of the turn now (before the EOF that follows it). */
  flush(): void;
}

/**
 * Copy `src` into `dst` with backpressure from both `dst` itself and, when `dst` is
 * an SSH channel, from its connection's shared socket queue.
 */
function pump(src: Duplex, dst: Duplex): Pump {
  const sock = sshSocketOf(dst);
  // Every relay through this connection may wait for the same 'drain'.
  if (sock && sock.getMaxListeners() !== 0) sock.setMaxListeners(0);
  let waiting = 0;
  const resume = () => {
    if (--waiting === 0 && !src.destroyed) src.resume();
  };
  const hold = () => {
    if (waiting++ === 0) src.pause();
  };
  const wait = (emitter: Duplex) => {
    hold();
    emitter.once('drain', resume);
  };
  const limit = sock ? CHANNEL_QUEUE_LIMIT : 0;
  const send = (chunk: Buffer) => {
    if (dst.destroyed || dst.writableEnded) return;
    const queued = dst.writableLength;
    if (limit > 0 && queued > 0 && queued + chunk.length > limit) {
      // The channel is out of window: hold the source until this chunk is handed to ssh2.
      hold();
      dst.write(chunk, resume);
    } else if (!dst.write(chunk)) wait(dst);
    if (sock && sock.writableLength > SSH_SOCKET_QUEUE_LIMIT && !sock.destroyed) wait(sock);
  };
  // Bulk chunks into an SSH channel wait for the end of this event-loop turn (and what
  // follows them waits behind them, to keep the stream's order).
  const deferFrom = sock ? BULK_CHUNK : 0;
  // A socket would keep reading all turn long (libuv reads up to 32 times): pause it
  // once a channel queue's worth waits. An SSH channel's data is bounded by its window.
  const deferLimit = deferFrom > 0 && !sshSocketOf(src) ? CHANNEL_QUEUE_LIMIT : Infinity;
  let deferred: Buffer[] | undefined;
  let deferredBytes = 0;
  const p: Pump = {
    bytes: 0,
    flush() {
      const chunks = deferred;
      if (!chunks) return;
      deferred = undefined;
      if (deferredBytes > deferLimit) resume();
      deferredBytes = 0;
      for (const c of chunks) send(c);
    },
  };
  src.on('data', (chunk: Buffer) => {
    p.bytes += chunk.length;
    if (deferred || (deferFrom > 0 && chunk.length >= deferFrom)) {
      if (dst.destroyed || dst.writableEnded) return;
      if (!deferred) {
        deferred = [];
        setImmediate(() => p.flush());
      }
      deferred.push(chunk);
      if (deferredBytes <= deferLimit && deferredBytes + chunk.length > deferLimit) hold();
      deferredBytes += chunk.length;
      return;
    }
    send(chunk);
  });
  // The source may have been paused explicitly (handshake readers do): start it flowing.
  src.resume();
  return p;
}

/**
 * Both directions are done: a client-side SSH channel whose EOF has just gone sends
 * its CLOSE right behind it, in the same turn and so the same write. Left to itself
 * it closes when Node destroys the finished stream, a tick later, after the EOF's
 * write: two writes on the device (and two reads on the broker) per stream.
 * Server-side channels already send both on `end()`; a channel with data still
 * queued sends its EOF later and closes as before.
 */
function closeBehindEof(s: Duplex): void {
  const ch = s as Duplex & { outgoing?: { state?: string }; close?: () => void };
  if (!s.destroyed && ch.outgoing?.state === 'eof' && typeof ch.close === 'function') ch.close();
}

/** Relay `a` ⇄ `b` until both sides are closed. */
export function relay(a: Duplex, b: Duplex, opts: { flushTimeoutMs?: number } = {}): Promise<RelayResult> {
  const started = Date.now();
  const flushTimeoutMs = opts.flushTimeoutMs ?? 10_000;
  return new Promise((resolve) => {
    const result: RelayResult = { aToB: 0, bToA: 0, durationMs: 0 };
    let closed = 0;
    let ended = 0;
    const timers: NodeJS.Timeout[] = [];

    const aToB = pump(a, b);
    const bToA = pump(b, a);

    // EOF from one side becomes EOF to the other (after what waited for the end of the
    // turn); once both ways are done, close both.
    const onEnd = (other: Duplex, from: Pump) => () => {
      from.flush();
      halfClose(other);
      if (++ended === 2) {
        if (!a.writableEnded) a.end();
        if (!b.writableEnded) b.end();
        closeBehindEof(a);
        closeBehindEof(b);
      }
    };
    // A side that ended before the relay began (its 'end' has been emitted) is passed on now.
    if (a.readableEnded) onEnd(b, aToB)();
    else a.once('end', onEnd(b, aToB));
    if (b.readableEnded) onEnd(a, bToA)();
    else b.once('end', onEnd(a, bToA));

    const onError = (err: unknown) => {
      result.error ??= err;
      a.destroy();
      b.destroy();
    };
    a.on('error', onError);
    b.on('error', onError);

    // When one side is gone for good, let the other flush what it already has, then end it.
    const onClose = (self: Duplex, other: Duplex) => () => {
      if (!other.destroyed) {
        other.resume(); // nobody reads it any more: discard instead of buffering
        if (!other.writableEnded) other.end();
        if (other.writableFinished) other.destroy(); // already flushed (usual: both ends closed together): no timer
        else {
          const t = setTimeout(() => other.destroy(), flushTimeoutMs);
          t.unref();
          timers.push(t);
          other.once('finish', () => other.destroy());
        }
      }
      if (++closed === 2) {
        for (const t of timers) clearTimeout(t);
        result.aToB = aToB.bytes;
        result.bToA = bToA.bytes;
        result.durationMs = Date.now() - started;
        resolve(result);
      }
    };
    a.once('close', onClose(a, b));
    b.once('close', onClose(b, a));
  });
}

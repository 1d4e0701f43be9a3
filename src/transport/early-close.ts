/**
 * While a stream is being opened for a local client, keep reading the client's
 * socket: a client that gives up (curl --max-time, a cancelled browser request)
 * usually just sends FIN, which is only noticed by reading. Bytes that arrive
 * early (optimistic clients) are kept and handed back in order.
 */
import type net from 'node:net';

/** The part of an AbortSignal that waiting for an open uses; an AbortSignal is one. */
export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason?: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * A CancelSignal without an EventTarget: an AbortController and its signal were 4 %
 * of a helper's JavaScript per connection, for the one listener an open registers.
 * Listeners run once, on the first abort; one added after it never runs (as with
 * AbortSignal).
 */
class ClientGone implements CancelSignal {
  aborted = false;
  private listeners: (() => void)[] = [];

  addEventListener(_type: 'abort', listener: () => void): void {
    if (!this.aborted) this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const i = this.listeners.indexOf(listener);
    if (i !== -1) this.listeners.splice(i, 1);
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const listeners = this.listeners;
    this.listeners = [];
    for (const l of listeners) l();
  }
}

export interface OpeningWatch {
  /** Aborts when the client closes or ends its side before the stream is ready. */
  signal: CancelSignal;
  /** Stop watching; returns the bytes that arrived meanwhile (pause the socket again). */
  stop(): Buffer;
}

/** Watch `socket` for an early close; call `stop()` once the stream is open (or failed). */
export function watchWhileOpening(socket: net.Socket, maxEarlyBytes = 64 * 1024): OpeningWatch {
  const gone = new ClientGone();
  const early: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    early.push(chunk);
    size += chunk.length;
    if (size > maxEarlyBytes) socket.pause(); // do not buffer without bound
  };
  const onGone = () => gone.abort();
  socket.on('data', onData);
  socket.once('end', onGone);
  socket.once('close', onGone);
  return {
    signal: gone,
    stop: () => {
      socket.off('data', onData);
      socket.off('end', onGone);
      socket.off('close', onGone);
      socket.pause();
      return Buffer.concat(early);
    },
  };
}

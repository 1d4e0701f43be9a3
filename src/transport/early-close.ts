/**
 * While a stream is being opened for a local client, keep reading the client's
 * socket: a client that gives up (curl --max-time, a cancelled browser request)
 * usually just sends FIN, which is only noticed by reading. Bytes that arrive
 * early (optimistic clients) are kept and handed back in order.
 */
import type net from 'node:net';

export interface OpeningWatch {
  /** Aborts when the client closes or ends its side before the stream is ready. */
  signal: AbortSignal;
  /** Stop watching; returns the bytes that arrived meanwhile (pause the socket again). */
  stop(): Buffer;
}

/** Watch `socket` for an early close; call `stop()` once the stream is open (or failed). */
export function watchWhileOpening(socket: net.Socket, maxEarlyBytes = 64 * 1024): OpeningWatch {
  const ac = new AbortController();
  const early: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    early.push(chunk);
    size += chunk.length;
    if (size > maxEarlyBytes) socket.pause(); // do not buffer without bound
  };
  const onGone = () => ac.abort();
  socket.on('data', onData);
  socket.once('end', onGone);
  socket.once('close', onGone);
  return {
    signal: ac.signal,
    stop: () => {
      socket.off('data', onData);
      socket.off('end', onGone);
      socket.off('close', onGone);
      socket.pause();
      return Buffer.concat(early);
    },
  };
}

/**
 * ssh2 writes every SSH packet with its own `socket.write()`. Opening a stream is
 * a burst of small packets (channel open, SOCKS bytes, window adjust, EOF, close),
 * and with TCP_NODELAY each would be its own syscall and TCP segment. Corking the
 * socket for the rest of the current tick lets Node flush the burst with one
 * `writev`, without adding any delay.
 */
import type net from 'node:net';

const COALESCED = Symbol('coalesced');

/** Coalesce all writes made to `sock` within one event-loop tick. Idempotent. */
export function coalesceWrites(sock: net.Socket): void {
  const s = sock as net.Socket & { [COALESCED]?: boolean };
  if (s[COALESCED]) return;
  s[COALESCED] = true;
  const write = sock.write.bind(sock) as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    if (!sock.destroyed) sock.uncork();
  };
  sock.write = ((...args: unknown[]) => {
    if (!corked && !sock.destroyed) {
      corked = true;
      sock.cork();
      process.nextTick(uncork);
    }
    return write(...args);
  }) as net.Socket['write'];
}

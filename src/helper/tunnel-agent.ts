/**
 * An `http.Agent` whose connections are tunnel streams. Keep-alive pools them per
 * upstream `host:port`, so a page with many assets reuses a few tunnel streams
 * instead of opening one per request.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { BrokerError } from '../errors';
import { makeTarget } from '../protocol/target';
import type { FastOpener } from './fast-open';
import type { StreamOpener } from './stream-opener';

/**
 * Give a tunnel stream the few `net.Socket` methods Node's HTTP client calls
 * (keep-alive, ref/unref, idle timeout). The idle timeout is real: it fires after
 * `ms` without data either way.
 */
export function asSocket(stream: Duplex): Socket {
  const s = stream as Duplex & Partial<Socket> & { _idleTimer?: NodeJS.Timeout; _idleMs?: number };
  if (typeof s.setKeepAlive !== 'function') s.setKeepAlive = () => s as Socket;
  if (typeof s.setNoDelay !== 'function') s.setNoDelay = () => s as Socket;
  if (typeof s.ref !== 'function') s.ref = () => s as Socket;
  if (typeof s.unref !== 'function') s.unref = () => s as Socket;
  if (typeof s.setTimeout !== 'function') {
    const arm = () => {
      if (s._idleTimer) clearTimeout(s._idleTimer);
      s._idleTimer = undefined;
      if (s._idleMs && s._idleMs > 0 && !s.destroyed) {
        s._idleTimer = setTimeout(() => s.emit('timeout'), s._idleMs);
        s._idleTimer.unref();
      }
    };
    s.on('data', arm);
    s.once('close', () => { if (s._idleTimer) clearTimeout(s._idleTimer); });
    s.setTimeout = ((ms: number, cb?: () => void) => {
      s._idleMs = ms;
      (s as { timeout?: number }).timeout = ms;
      // As net.Socket does: 0 with a callback removes it (node's HTTP client does that after
      // every keep-alive response; adding it again would leak a listener per request).
      if (cb && ms === 0) s.removeListener('timeout', cb);
      else if (cb) s.once('timeout', cb);
      arm();
      return s as Socket;
    }) as Socket['setTimeout'];
  }
  return s as Socket;
}

/** HTTP agent that dials through the tunnel. */
export class TunnelAgent extends http.Agent {
  /**
   * With fast open (`fast-open.ts`), a new upstream connection to a target the descriptor
   * allows outright carries the request before the device has answered; a refusal still
   * reaches the proxy as the exact error, since no response has begun.
   */
  constructor(private readonly opener: StreamOpener, opts: http.AgentOptions = {}, private readonly fast?: FastOpener) {
    super({ keepAlive: true, keepAliveMsecs: 15_000, maxSockets: 32, maxFreeSockets: 8, timeout: 60_000, ...opts });
  }

  override createConnection(options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const cb = (err: Error | null, stream?: Duplex) => callback?.(err, stream as Duplex);
    let target;
    try {
      target = makeTarget(String(options.host ?? options.hostname ?? ''), Number(options.port ?? 80));
    } catch (err) {
      process.nextTick(() => cb(err as BrokerError));
      return undefined;
    }
    const verdict = this.fast?.judge(target);
    if (verdict instanceof BrokerError) {
      process.nextTick(() => cb(verdict));
      return undefined;
    }
    const opened = verdict === 'now' && this.fast ? this.fast.openEarly(target) : this.opener.open(target).then((o) => o.stream);
    opened.then(
      (stream) => cb(null, asSocket(stream)),
      (err: unknown) => cb(err instanceof Error ? err : new BrokerError('BRK_INTERNAL', String(err))),
    );
    return undefined;
  }
}

/**
 * The helper's local SOCKS5 server (what curl, browsers and `ssh -o ProxyCommand`
 * talk to). The greeting is answered locally (no round trip); the CONNECT goes
 * through the StreamOpener, and the client gets the device's exact reply code:
 * 0x02 not allowed, 0x03 network unreachable, 0x04 host unreachable, 0x05 refused,
 * 0x06 timed out. With fast open (`fast-open.ts`) a target the descriptor allows
 * outright is answered "succeeded" at once, and one it denies is refused at once.
 */
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { BrokerError, describeError, toSocksReply } from '../errors';
import { silentLogger, type Logger } from '../log';
import { Timeouts } from '../protocol/constants';
import { encodeReply, UNKNOWN_BOUND } from '../protocol/socks5';
import { acceptSocksConnect, answer, NOTHING_OWED } from '../protocol/socks-handshake';
import { formatTarget } from '../protocol/target';
import { watchWhileOpening } from '../transport/early-close';
import { boundAddress, listenOn, stopServer } from '../transport/listen';
import { relay } from '../transport/relay';
import type { FastOpener } from './fast-open';
import type { StreamOpener } from './stream-opener';

export interface SocksFrontendEvents {
  stream: [{
    target: string; rep: number; reason: string; sent?: number; received?: number; durationMs?: number;
    /** Fast open: the client had been told "succeeded", so it saw its connection reset instead of `rep`. */
    reset?: boolean;
  }];
}

export class SocksFrontend extends EventEmitter<SocksFrontendEvents> {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly opener: StreamOpener, private readonly log: Logger = silentLogger, private readonly fast?: FastOpener) {
    super();
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.onClient(s));
  }

  /** Listen; resolves when bound. Port 0 picks a free port. */
  start(host: string, port: number): Promise<void> {
    return listenOn(this.server, host, port, 'SOCKS', '--socks');
  }

  address(): { host: string; port: number } {
    return boundAddress(this.server);
  }

  /** Stop listening and cut every open client. Idempotent. */
  close(): Promise<void> {
    return stopServer(this.server, this.sockets);
  }

  private async onClient(socket: net.Socket): Promise<void> {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', (err) => this.log.debug('socks client error', { error: describeError(err) }));
    let targetText = '?';
    let owed = NOTHING_OWED;
    try {
      const request = await acceptSocksConnect(socket, { timeoutMs: Timeouts.socksHandshake });
      if (!request) return;
      owed = request;
      targetText = formatTarget(request.target);
      if (request.command !== 1) {
        socket.end(answer(request, encodeReply(0x07)));
        this.emit('stream', { target: targetText, rep: 7, reason: 'only CONNECT is supported' });
        return;
      }
      const verdict = this.fast?.judge(request.target);
      if (verdict instanceof BrokerError) throw verdict;
      if (verdict === 'now' && this.fast) {
        socket.write(answer(request, encodeReply(0, UNKNOWN_BOUND)));
        const out = await this.fast.carry(socket, request.target);
        if (!out) return; // the client left before the device answered
        if (out.rep === 0) return void this.emit('stream', { target: targetText, ...out });
        this.log.info('socks request failed after fast open', { dest: targetText, rep: out.rep, reason: out.reason });
        this.emit('stream', { target: targetText, ...out, reset: true });
        return;
      }
      // A client that gives up while we open (FIN) cancels the open on the device.
      const watch = watchWhileOpening(socket);
      let early: Buffer = Buffer.alloc(0);
      const opened = await this.opener.open(request.target, watch.signal).finally(() => { early = watch.stop(); });
      if (socket.destroyed || watch.signal.aborted) {
        opened.stream.destroy();
        socket.destroy();
        return;
      }
      socket.write(answer(request, encodeReply(0, opened.bound)));
      if (early.length) opened.stream.write(early);
      const r = await relay(socket, opened.stream);
      this.emit('stream', { target: targetText, rep: 0, reason: 'succeeded', sent: early.length + r.aToB, received: r.bToA, durationMs: r.durationMs });
    } catch (err) {
      const e = err instanceof BrokerError ? err : new BrokerError('BRK_INTERNAL', describeError(err));
      const reply = (err as { reply?: Buffer }).reply;
      this.log.info('socks request failed', { dest: targetText, code: e.code, reason: e.message });
      this.emit('stream', { target: targetText, rep: toSocksReply(e.code), reason: e.message });
      if (!socket.destroyed) {
        if (reply) socket.end(answer(owed, reply));
        else if (targetText === '?') socket.destroy();
        else socket.end(answer(owed, encodeReply(toSocksReply(e.code))));
      }
    }
  }
}

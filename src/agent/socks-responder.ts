/**
 * Serves SOCKS5 on one `forwarded-tcpip` channel from the broker: greeting, CONNECT,
 * dial from the device, then the exact reply code (and on failure a one-line reason
 * after the reply, which our broker relays to helpers), then the relay.
 */
import type { Duplex } from 'node:stream';
import { BrokerError, describeError } from '../errors';
import { Timeouts } from '../protocol/constants';
import { encodeReply } from '../protocol/socks5';
import { helperFromLabel } from '../protocol/socks-auth';
import { acceptSocksConnect, answer, NOTHING_OWED } from '../protocol/socks-handshake';
import { formatTarget, type Target } from '../protocol/target';
import { relay, type RelayResult } from '../transport/relay';
import type { DialOptions } from './dial';
import { dialTarget } from './dial';

/** What happened on one stream, for the live view and logs. */
export interface StreamReport {
  /** Helper id from the broker's stream label, when it sent one. */
  helper?: number;
  target?: Target;
  rep: number;
  reason: string;
  result?: RelayResult;
}

export interface ResponderOptions extends DialOptions {
  handshakeTimeoutMs: number;
  /** Called once the outcome of the CONNECT is known (before the relay). */
  onOpen?: (report: StreamReport) => void;
}

/** Run one SOCKS5 exchange on `channel`; resolves when the stream is over. Never throws. */
export async function serveSocksStream(channel: Duplex, opts: ResponderOptions): Promise<StreamReport> {
  const fail = (rep: number, reason: string, target?: Target): StreamReport => {
    if (!channel.destroyed) channel.end(answer(owed, encodeReply(rep), Buffer.from(`${reason.replace(/\n/g, ' ')}\n`)));
    const report = { helper, target, rep, reason };
    opts.onOpen?.(report);
    return report;
  };
  let target: Target | undefined;
  let helper: number | undefined;
  let owed = NOTHING_OWED;
  try {
    // The broker keeps a few channels open in advance (wait long for the first byte), and
    // labels each stream with its helper (RFC 1929 user name `helper-<id>`).
    const request = await acceptSocksConnect(channel, { timeoutMs: opts.handshakeTimeoutMs, idleTimeoutMs: Timeouts.poolIdle, acceptLabel: true });
    if (!request) return { rep: 0xff, reason: 'no acceptable SOCKS auth method' };
    owed = request;
    helper = request.label === undefined ? undefined : helperFromLabel(request.label);
    target = request.target;
    if (request.command !== 1) return fail(0x07, `SOCKS command ${request.command} is not supported (only CONNECT)`, target);
    const socket = await dialTarget(target, opts);
    const report: StreamReport = { helper, target, rep: 0, reason: 'succeeded' };
    // Report (log, live view) once the reply has left: the helper is waiting for it.
    const reported = new Promise<void>((resolve) => {
      channel.write(answer(request, encodeReply(0, { host: socket.localAddress ?? '0.0.0.0', port: socket.localPort ?? 0 })), () => {
        try {
          opts.onOpen?.(report);
        } finally {
          resolve();
        }
      });
    });
    report.result = await relay(channel, socket);
    await reported;
    return report;
  } catch (err) {
    if (err instanceof BrokerError) {
      const reply = (err as { reply?: Buffer }).reply;
      if (reply && !target) {
        channel.end(reply);
        return { rep: reply[1] ?? 1, reason: err.message };
      }
      if (!target && err.code === 'BRK_TIMEOUT') { channel.destroy(); return { rep: 1, reason: err.message }; }
      return fail(err.socksReply, err.message, target);
    }
    return fail(1, `${target ? formatTarget(target) : 'stream'}: ${describeError(err)}`, target);
  }
}

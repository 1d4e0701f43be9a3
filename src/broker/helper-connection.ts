/**
 * One helper's SSH connection on the broker. Two stream paths:
 * - `direct-tcpip` (native helpers, and stock `ssh -D/-L/-W/-J`): accepted only once
 *   the device said "succeeded"; a failure becomes an SSH open failure whose
 *   description is `BRK_CODE: reason`, which native helpers turn back into the
 *   device's exact SOCKS reply code;
 * - `direct-streamlocal` to SOCKS_STREAM_PATH (native helpers before 2026-11-26):
 *   SOCKS5 in-band, with the device's reply relayed.
 * Plus the control channel (`describe` as JSON, any other command or a shell as text).
 */
import type { Connection, ServerChannel } from 'ssh2';
import { BrokerError, describeError, fromSocksReply, OpenFailure, socksReplyMessage, toOpenFailure } from '../errors';
import type { Logger } from '../log';
import { DESCRIBE_COMMAND, Limits, PROTOCOL_VERSION, SOCKS_STREAM_PATH, Timeouts } from '../protocol/constants';
import { sendEvent, type ControlEvent, type EndReason, type HelperInfo } from '../protocol/control';
import { formatDescriptor } from '../protocol/descriptor';
import { encodeReply } from '../protocol/socks5';
import { acceptSocksConnect, answer } from '../protocol/socks-handshake';
import { makeTarget, type Target } from '../protocol/target';
import { rejectChannel } from '../transport/open-failure';
import { watchRoundTrip } from '../transport/round-trip';
import { acceptWithStreamWindow, type WindowScope } from '../transport/stream-window';
import { acceptTerminalRequests } from './agent-connection';
import { auditRefused, openRoute, runRoute } from './router';
import type { BrokerMetrics } from './metrics';
import type { HelperLink, Session } from './sessions';
import { crlf, eventText } from './text';

/**
 * Uploads flow helper -> broker: over a slow helper uplink, what one of its streams has
 * in flight is what its other streams (a browser's clicks beside an upload) wait
 * behind. On loopback and LANs the broker is the slowest stage, and ssh2's windows stay.
 */
const HELPER_LEG: WindowScope = { longOnly: true };

/** Wire up an authenticated helper connection; returns its link (already registered in the session). */
export function handleHelper(conn: Connection, session: Session, info: HelperInfo, log: Logger, metrics?: BrokerMetrics): HelperLink {
  const sinks = new Set<(ev: ControlEvent) => void>();
  let ending = false;
  const link: HelperLink = {
    info,
    sendEvent: (ev) => { for (const s of sinks) s(ev); },
    end: (reason: EndReason, message: string) => {
      if (ending) return;
      ending = true;
      link.sendEvent({ event: 'session-ended', reason, message });
      // Give the event a moment to reach the client, then hang up.
      setTimeout(() => conn.end(), 200).unref();
    },
  };
  session.helpers.set(info.id, link);
  watchRoundTrip(conn);
  let openChannels = 0;
  const track = (ch: ServerChannel) => {
    openChannels++;
    ch.once('close', () => { openChannels--; });
  };
  const overLimit = () => openChannels >= Limits.channelsPerConnection;
  const refuseOverLimit = (reject: () => void) =>
    rejectChannel(conn, reject, OpenFailure.RESOURCE_SHORTAGE, `BRK_RATE_LIMITED: more than ${Limits.channelsPerConnection} open channels on this connection`);

  conn.on('session', (accept, reject) => {
    if (overLimit()) return reject();
    const ssh = accept();
    acceptTerminalRequests(ssh);
    ssh.on('exec', (acc, _rej, req) => {
      const ch = acc();
      track(ch);
      if (req.command === DESCRIBE_COMMAND) jsonControl(ch);
      else textControl(ch);
    });
    ssh.on('shell', (acc) => {
      const ch = acc();
      track(ch);
      textControl(ch);
    });
  });

  const attach = (ch: ServerChannel, sink: (ev: ControlEvent) => void) => {
    sinks.add(sink);
    ch.once('close', () => sinks.delete(sink));
    ch.on('data', () => { /* helpers send nothing on control channels; drain */ });
  };

  const jsonControl = (ch: ServerChannel) => {
    attach(ch, (ev) => {
      sendEvent(ch, ev);
      if (ev.event === 'session-ended') { ch.exit(1); ch.end(); }
    });
    sendEvent(ch, {
      event: 'hello', version: PROTOCOL_VERSION, descriptor: session.descriptor, helper: info,
      label: session.descriptor.label, helpers: session.helpers.size,
    });
  };

  const textControl = (ch: ServerChannel) => {
    attach(ch, (ev) => {
      if (ch.writable) ch.write(crlf(eventText(ev)));
      if (ev.event === 'session-ended') { ch.exit(1); ch.end(); }
    });
    ch.write(crlf([
      `remote-assist: joined session${session.descriptor.label ? ` "${session.descriptor.label}"` : ''} as helper #${info.id}.`,
      ...formatDescriptor(session.descriptor).split('\n').map((l) => `  ${l}`),
      'Use ssh -D / -L / -W / -J through this connection to reach the device network.',
    ].join('\n')));
  };

  // Native and stock clients: accept only after the device connected.
  conn.on('tcpip', (accept, reject, req) => {
    if (overLimit()) return refuseOverLimit(reject);
    let target: Target;
    try {
      target = makeTarget(req.destIP, req.destPort);
    } catch (err) {
      const e = err as BrokerError;
      return rejectChannel(conn, reject, toOpenFailure(e.code ?? 'BRK_BAD_TARGET'), `${e.code}: ${e.message}`);
    }
    void openRoute(session, link, target).then((out) => {
      metrics?.streamOpened('direct-tcpip', socksReplyMessage(out.rep), out.openSeconds);
      if (out.rep !== 0 || !out.stream) {
        auditRefused(log, session, link, target, out.rep, out.reason, 'direct-tcpip');
        const code = fromSocksReply(out.rep);
        return rejectChannel(conn, reject, toOpenFailure(code), `${code}: ${out.reason}`);
      }
      const ch = acceptWithStreamWindow(conn, accept, HELPER_LEG);
      if (!ch) { out.stream.channel.destroy(); return; }
      track(ch);
      void runRoute(session, link, target, ch, out.stream.channel, log, 'direct-tcpip', metrics);
    });
  });

  // Older native helpers: SOCKS5 in-band, device's reply relayed verbatim.
  conn.on('openssh.streamlocal', (accept, reject, req) => {
    if (req.socketPath !== SOCKS_STREAM_PATH) {
      return rejectChannel(conn, reject, OpenFailure.ADMINISTRATIVELY_PROHIBITED, `unknown stream "${String(req.socketPath).slice(0, 64)}"`);
    }
    if (overLimit()) return refuseOverLimit(reject);
    const ch = accept();
    track(ch);
    void inBandSocks(ch).catch((err) => {
      log.debug('in-band SOCKS failed', { error: describeError(err) });
      ch.destroy();
    });
  });

  const inBandSocks = async (ch: ServerChannel) => {
    // Native helpers keep a few of these channels open in advance: wait long for the first byte.
    const request = await acceptSocksConnect(ch, { timeoutMs: Timeouts.socksHandshake, idleTimeoutMs: Timeouts.poolIdle }).catch((err) => failWith(ch, err));
    if (!request) return;
    if (request.command !== 1) {
      ch.end(answer(request, encodeReply(0x07), Buffer.from('only CONNECT is supported\n')));
      return;
    }
    const target = request.target;
    const out = await openRoute(session, link, target);
    metrics?.streamOpened('socks', socksReplyMessage(out.rep), out.openSeconds);
    if (out.rep !== 0 || !out.stream) {
      auditRefused(log, session, link, target, out.rep, out.reason, 'socks');
      ch.end(answer(request, encodeReply(out.rep), Buffer.from(`${out.reason}\n`)));
      return;
    }
    ch.write(answer(request, encodeReply(0, out.stream.bound)));
    await runRoute(session, link, target, ch, out.stream.channel, log, 'socks', metrics);
  };

  conn.on('request', (_accept, reject) => reject?.());
  return link;
}

/** Answer a malformed SOCKS exchange with its reply (if any) and close. */
function failWith(ch: ServerChannel, err: unknown): undefined {
  const reply = (err as { reply?: Buffer }).reply;
  const msg = err instanceof BrokerError ? err.message : describeError(err);
  if (reply) ch.end(Buffer.concat([reply, Buffer.from(`${msg}\n`)]));
  else ch.destroy();
  return undefined;
}


/**
 * One agent's SSH connection on the broker: accept its `tcpip-forward`, read its
 * descriptor (JSON on the native `expose` channel, or flags on a stock ssh
 * command line), create the session, and keep the agent informed.
 */
import type { Connection, ServerChannel, Session as SshSession } from 'ssh2';
import { BrokerError, describeError, OpenFailure } from '../errors';
import type { Logger } from '../log';
import { EXPOSE_COMMAND, Limits } from '../protocol/constants';
import { ExposeRequestSchema, parseJsonLine, readLines, sendEvent, type ControlEvent } from '../protocol/control';
import { makeDescriptor, parseDescriptor, formatDescriptor, type Descriptor } from '../protocol/descriptor';
import { rejectChannel } from '../transport/open-failure';
import { AgentLink } from './agent-link';
import type { Session } from './sessions';
import { parseStockExposeArgs } from './stock-args';
import { crlf, eventText, stockHelperCommand } from './text';

/** What an agent connection needs from the broker. */
export interface AgentContext {
  log: Logger;
  socksHandshakeMs: number;
  exposeHandshakeMs: number;
  /** Address helpers should use, as seen by this connection (`HOST:PORT`). */
  publicAddress: string;
  hostFingerprint: string;
  /** The agent announced named opens (`protocol/named-open.ts`) in its SSH identification. */
  namedOpens?: boolean;
  allocatePort(): number;
  /** Create and register a session; throws BrokerError when the broker is full. */
  createSession(link: AgentLink, descriptor: Descriptor): Session;
}

/** Wire up an authenticated agent connection. */
export function handleAgent(conn: Connection, fingerprint: string, address: string, ctx: AgentContext): AgentLink {
  const log = ctx.log;
  const link = new AgentLink(conn, fingerprint, address, ctx.socksHandshakeMs, ctx.namedOpens ?? false);
  let session: Session | undefined;

  // Without a session soon, the connection is just holding a slot: drop it.
  const handshakeTimer = setTimeout(() => {
    if (!session) {
      log.warn('agent sent no descriptor in time; disconnecting', { address, timeoutMs: ctx.exposeHandshakeMs });
      link.close();
    }
  }, ctx.exposeHandshakeMs);
  handshakeTimer.unref();
  conn.once('close', () => clearTimeout(handshakeTimer));

  conn.on('request', (accept, reject, name, info) => {
    if (name === 'tcpip-forward' && info && !link.binding) {
      const i = info as { bindAddr: string; bindPort: number };
      const port = i.bindPort === 0 ? ctx.allocatePort() : i.bindPort;
      link.binding = { addr: i.bindAddr, port };
      log.debug('reverse tunnel bound', { bindAddr: i.bindAddr, port });
      accept?.(port);
      return;
    }
    if (name === 'cancel-tcpip-forward' && link.binding) {
      log.info('agent cancelled its reverse tunnel', { address });
      link.binding = undefined;
      accept?.();
      return;
    }
    reject?.();
  });

  // Agents never open streams into the broker.
  conn.on('tcpip', (_accept, reject) => rejectChannel(conn, reject, OpenFailure.ADMINISTRATIVELY_PROHIBITED, 'an exposing device cannot open streams; join with a session code instead'));
  conn.on('openssh.streamlocal', (_accept, reject) => rejectChannel(conn, reject, OpenFailure.ADMINISTRATIVELY_PROHIBITED, 'an exposing device cannot open streams'));

  let controlOpen = false;
  conn.on('session', (accept, reject) => {
    if (controlOpen) return reject();
    controlOpen = true;
    const ssh = accept();
    acceptTerminalRequests(ssh);
    ssh.on('exec', (acc, _rej, info) => {
      const ch = acc();
      if (info.command === EXPOSE_COMMAND) jsonControl(ch);
      else textControl(ch, info.command);
    });
    ssh.on('shell', (acc) => textControl(acc(), ''));
  });

  const start = (descriptor: Descriptor, ch: ServerChannel, sink: (ev: ControlEvent) => void): Session | undefined => {
    if (!link.binding) {
      throw new BrokerError('BRK_BAD_REQUEST', 'no reverse tunnel: request one first (stock ssh: `ssh -R 0 -p PORT expose@HOST`)');
    }
    link.eventSink = sink;
    session = ctx.createSession(link, descriptor);
    clearTimeout(handshakeTimer);
    link.startStreams();
    ch.once('close', () => {
      if (session && !session.ended) {
        log.info('agent closed its control channel', { session: session.redactedCode });
        link.close();
      }
    });
    return session;
  };

  const jsonControl = (ch: ServerChannel) => {
    const fail = (err: BrokerError) => {
      sendEvent(ch, { event: 'error', code: err.code, message: err.message });
      ch.exit(1);
      ch.end();
      log.warn('expose refused', { address, code: err.code, reason: err.message });
    };
    const stop = readLines(ch, (line) => {
      stop();
      try {
        const req = ExposeRequestSchema.safeParse(parseJsonLine(line, 'expose request'));
        if (!req.success) throw new BrokerError('BRK_BAD_REQUEST', `expose request: ${req.error.issues[0]?.message ?? 'invalid'}`);
        const descriptor = parseDescriptor(req.data.descriptor);
        link.native = true;
        const s = start(descriptor, ch, (ev) => sendEvent(ch, ev));
        if (s) sendEvent(ch, sessionEvent(s, ctx));
      } catch (err) {
        fail(err instanceof BrokerError ? err : new BrokerError('BRK_INTERNAL', describeError(err)));
      }
    }, fail, Limits.descriptorBytes + 1024);
  };

  const textControl = (ch: ServerChannel, command: string) => {
    try {
      const args = parseStockExposeArgs(command);
      const descriptor = makeDescriptor({ label: args.label, allow: args.allow, deny: args.deny, maxHelpers: args.maxHelpers });
      const s = start(descriptor, ch, (ev) => { if (ch.writable) ch.write(crlf(eventText(ev))); });
      if (!s) return;
      const ev = sessionEvent(s, ctx);
      ch.write(crlf([
        'remote-assist: this device is now exposed.',
        `  session code:  ${s.code}`,
        `  helpers run:   ${ev.helperCommand}`,
        `    or (ssh):    ${stockHelperCommand(s.code, ctx.publicAddress)}`,
        ...formatDescriptor(descriptor).split('\n').map((l) => `  ${l}`),
        '  note: a stock ssh client does not enforce the policy itself; the broker does.',
        'Keep this running; press Ctrl-C (or close the connection) to end the session.',
      ].join('\n')));
    } catch (err) {
      const e = err instanceof BrokerError ? err : new BrokerError('BRK_INTERNAL', describeError(err));
      ch.write(crlf(`error ${e.code}: ${e.message}`));
      ch.exit(1);
      ch.end();
      log.warn('expose refused', { address, code: e.code, reason: e.message });
    }
  };

  return link;
}

function sessionEvent(s: Session, ctx: AgentContext): Extract<ControlEvent, { event: 'session' }> {
  return {
    event: 'session',
    code: s.code,
    label: s.descriptor.label,
    broker: ctx.publicAddress,
    fingerprint: ctx.hostFingerprint,
    expiresAt: s.descriptor.expiresAt,
    helperCommand: `broker-agent join ${s.code} --broker ${ctx.publicAddress} --fingerprint ${ctx.hostFingerprint}`,
  };
}

/** Stock clients ask for a pty, env vars and window changes; say yes and ignore them. */
export function acceptTerminalRequests(ssh: SshSession): void {
  ssh.on('pty', (acc) => acc?.());
  ssh.on('env', (acc) => acc?.());
  ssh.on('window-change', (acc) => acc?.());
  ssh.on('signal', (acc) => acc?.());
  ssh.on('auth-agent', (_acc, rej) => rej?.());
  ssh.on('x11', (_acc, rej) => rej?.());
  ssh.on('subsystem', (_acc, rej) => rej?.());
  ssh.on('sftp', (_acc, rej) => rej?.());
}

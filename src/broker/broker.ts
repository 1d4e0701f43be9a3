/**
 * `broker serve`: the only listening component. Accepts agents and helpers over
 * SSH, keeps the session registry, routes helper streams through each device's
 * reverse tunnel, and at a fixed interval checks every tunnel: when one is gone
 * it deletes that agent's key, ends the session and tells the helpers why (claim 3).
 */
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { Server, type Connection } from 'ssh2';
import { BrokerError, describeError, isExpectedClose } from '../errors';
import { silentLogger, type Logger } from '../log';
import { envDuration, formatHostPort } from '../config';
import { Limits, NAMED_OPENS, SSH_IDENT, Timeouts } from '../protocol/constants';
import type { EndReason, HelperInfo } from '../protocol/control';
import { descriptorPolicy, type Descriptor } from '../protocol/descriptor';
import { announcesNamedOpens } from '../protocol/named-open';
import { generateSessionCode } from '../protocol/session-code';
import { coalesceWrites } from '../transport/coalesce';
import { loadOrCreateHostKey } from '../transport/keys';
import type { AgentLink } from './agent-link';
import { handleAgent } from './agent-connection';
import { createAuthenticator } from './auth';
import { handleHelper } from './helper-connection';
import { MemoryJoinRateLimiter, type JoinRateLimiter } from './join-limiter';
import { BrokerMetrics } from './metrics';
import { MemorySessionRegistry, Session, type SessionRegistry } from './sessions';
import { patchChannelOverrun } from '../transport/ssh2-channel';

export interface BrokerOptions {
  /** Listen address (default: every interface, IPv6 and IPv4); port 0 picks a free port (read it back with `address()`). */
  host?: string;
  port?: number;
  /** Serve Prometheus metrics at http://HOST:PORT/metrics (off when absent). */
  metrics?: { host: string; port: number };
  /** Directory for the persistent host key (created on first start). */
  dataDir: string;
  /** Address printed in helper commands; default: the address each agent connected to. */
  publicAddress?: string;
  /** Liveness check interval (claim 3). */
  checkIntervalMs?: number;
  /** How long the device has to answer a stream: its dial included (env BROKER_STREAM_OPEN_TIMEOUT). */
  socksHandshakeMs?: number;
  exposeHandshakeMs?: number;
  /** Time a connection has to finish the SSH handshake and authenticate (env BROKER_SSH_HANDSHAKE_TIMEOUT). */
  sshHandshakeMs?: number;
  maxSessions?: number;
  log?: Logger;
  registry?: SessionRegistry;
  limiter?: JoinRateLimiter;
}

/** Events for observers (CLI JSON output, tests). */
export interface BrokerEvents {
  'session-created': [Session];
  'session-ended': [Session, EndReason];
  'agent-key-deleted': [Session, string];
}

export class Broker extends EventEmitter<BrokerEvents> {
  readonly fingerprint: string;
  private readonly opts: Required<Omit<BrokerOptions, 'publicAddress' | 'registry' | 'limiter' | 'log' | 'metrics'>> & Pick<BrokerOptions, 'publicAddress' | 'metrics'>;
  /** Prometheus metrics (always counted; served only with the `metrics` option). */
  readonly metrics: BrokerMetrics;
  private metricsAddress: { host: string; port: number } | undefined;
  private readonly log: Logger;
  readonly registry: SessionRegistry;
  private readonly limiter: JoinRateLimiter;
  private readonly ssh: Server;
  private readonly connections = new Set<Connection>();
  private readonly handshakeTimers = new WeakMap<net.Socket, NodeJS.Timeout>();
  private sweeper: NodeJS.Timeout | undefined;
  private nextSessionId = 1;
  private nextHelperId = 1;
  private nextPort = 10_000;
  private closing = false;

  constructor(options: BrokerOptions) {
    super();
    this.opts = {
      host: '', port: 2222, checkIntervalMs: Timeouts.checkInterval, socksHandshakeMs: envDuration('BROKER_STREAM_OPEN_TIMEOUT', Timeouts.socksHandshake + Timeouts.dial),
      exposeHandshakeMs: Timeouts.exposeHandshake, sshHandshakeMs: envDuration('BROKER_SSH_HANDSHAKE_TIMEOUT', Timeouts.sshReady), maxSessions: Limits.sessions, ...stripUndefined(options), dataDir: options.dataDir,
    };
    this.log = options.log ?? silentLogger;
    this.registry = options.registry ?? new MemorySessionRegistry();
    this.limiter = options.limiter ?? new MemoryJoinRateLimiter();
    this.metrics = new BrokerMetrics(
      () => this.registry.size,
      () => [...this.registry.all()].reduce((n, s) => n + s.helpers.size, 0),
    );
    const hostKey = loadOrCreateHostKey(this.opts.dataDir);
    this.fingerprint = hostKey.fingerprint;
    patchChannelOverrun(); // a device or helper that ignores our windows cannot make us buffer without bound
    this.ssh = new Server(
      {
        hostKeys: [hostKey.privateKey],
        ident: SSH_IDENT,
        // Silent peers (no packet for 2 intervals) are cut off; the sweeper then ends their sessions.
        keepaliveInterval: this.opts.checkIntervalMs,
        keepaliveCountMax: 2,
      },
      (conn, info) => this.onConnection(conn, info.ip, NAMED_OPENS && announcesNamedOpens(info.header?.comments)),
    );
    this.ssh.on('error', (err: Error) => this.log.error('ssh server error', { error: describeError(err) }));
    // ssh2's own TCP server (internal); if its shape changes, timers are armed in onConnection instead.
    (this.ssh as unknown as { _srv?: net.Server })._srv?.on('connection', (socket: net.Socket) => this.armHandshakeTimer(socket));
  }

  /** Start listening; resolves once bound. */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new BrokerError('BRK_BAD_OPTION', `cannot listen on ${formatHostPort(this.opts.host || '*', this.opts.port)}: ${describeError(err)} (choose another --listen)`, { cause: err }));
      this.ssh.once('error', onError);
      const onListening = () => {
        this.ssh.off('error', onError);
        resolve();
      };
      // No host: Node listens on :: (dual-stack) where IPv6 exists, else on 0.0.0.0.
      if (this.opts.host) this.ssh.listen(this.opts.port, this.opts.host, onListening);
      else this.ssh.listen(this.opts.port, onListening);
    });
    if (this.opts.metrics) this.metricsAddress = await this.metrics.listen(this.opts.metrics.host, this.opts.metrics.port);
    this.sweeper = setInterval(() => this.sweep(), this.opts.checkIntervalMs);
    this.sweeper.unref();
  }

  /** Where `/metrics` is served, if it is. */
  metricsAddr(): { host: string; port: number } | undefined {
    return this.metricsAddress;
  }

  /** The bound SSH address. */
  address(): { host: string; port: number } {
    const a = this.ssh.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Stop accepting, end every session (helpers are told why), close every connection. Idempotent. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.sweeper) clearInterval(this.sweeper);
    await this.metrics.close();
    for (const s of this.registry.all()) this.endSession(s, 'broker-shutdown', 'the broker is shutting down');
    await new Promise<void>((resolve) => {
      this.ssh.close(() => resolve());
      setTimeout(() => {
        for (const c of this.connections) c.end();
      }, 300).unref();
      setTimeout(() => {
        for (const c of this.connections) (c as unknown as { _sock?: net.Socket })._sock?.destroy();
        resolve();
      }, 2000).unref();
    });
  }

  /** Claim 3: check every agent tunnel; end sessions whose tunnel is gone, and expired ones. */
  sweep(now = Date.now()): void {
    for (const s of this.registry.all()) {
      if (s.ended) continue;
      if (!s.agent.alive()) {
        const key = s.agentKey;
        s.agentKey = undefined;
        this.log.info('agent tunnel gone; deleting its key', { event: 'agent-key-deleted', session: s.redactedCode, fingerprint: key });
        this.emit('agent-key-deleted', s, key ?? '');
        this.metrics.keysDeleted.inc();
        this.endSession(s, 'agent-gone', 'the device disconnected (its tunnel is gone)');
      } else if (s.expiresAt !== undefined && now >= s.expiresAt) {
        this.endSession(s, 'expired', 'the session reached its expiry time');
      }
    }
  }

  private endSession(s: Session, reason: EndReason, message: string): void {
    if (s.ended) return;
    s.ended = true;
    this.registry.remove(s);
    for (const stream of s.streams) stream.destroy();
    s.streams.clear();
    for (const h of s.helpers.values()) h.end(reason, message);
    s.agent.sendEvent({ event: 'session-ended', reason, message });
    setTimeout(() => s.agent.close(), 200).unref();
    this.log.info('session ended', { event: 'session-ended', session: s.redactedCode, reason, helpers: s.helpers.size, durationMs: Date.now() - s.createdAt });
    this.metrics.sessionEnded(reason);
    this.emit('session-ended', s, reason);
  }

  private onConnection(conn: Connection, ip: string, namedOpens: boolean): void {
    if (this.closing) return void conn.end();
    this.connections.add(conn);
    const sock = (conn as unknown as { _sock?: net.Socket })._sock;
    if (sock) {
      sock.setNoDelay(true);
      coalesceWrites(sock);
    }
    const address = sock ? formatHostPort(sock.remoteAddress ?? ip, sock.remotePort ?? 0) : ip;
    // On a dual-stack socket IPv4 peers appear as ::ffff:a.b.c.d; print them as IPv4.
    const local = sock ? formatHostPort((sock.localAddress ?? '127.0.0.1').replace(/^::ffff:(?=\d+\.)/, ''), sock.localPort ?? this.opts.port) : '';
    const log = this.log.child(`conn ${address}`);
    const auth = createAuthenticator({
      registry: this.registry,
      limiter: this.limiter,
      ip,
      onRefused: (err, user) => {
        this.metrics.joinRefused(err.code);
        log.info('join refused', { event: 'join-refused', code: err.code, reason: err.message, user: user.slice(0, 4) + '…' });
      },
    });
    conn.on('authentication', auth.onAuth);
    if (sock) {
      this.armHandshakeTimer(sock); // no-op if armed when the TCP connection came in
      conn.once('ready', () => clearTimeout(this.handshakeTimers.get(sock)));
    }
    conn.on('error', (err: Error & { level?: string }) => {
      if (err.level === 'client-timeout') {
        // Keepalive timeout: ssh2 only half-closes, which a silent peer (cable cut, frozen
        // device) never completes, so 'close' (and the sweeper's view of the tunnel) would
        // never come. Cut the socket so the connection really ends.
        log.info('peer stopped answering keepalives; disconnecting', { error: describeError(err) });
        sock?.destroy();
        return;
      }
      if (isExpectedClose(err)) log.debug('connection error', { error: describeError(err) });
      else log.info('connection error', { error: describeError(err) });
    });
    conn.once('close', () => this.connections.delete(conn));
    conn.once('ready', () => {
      const p = auth.getPrincipal();
      if (!p) return void conn.end();
      if (p.role === 'agent') {
        const link: AgentLink = handleAgent(conn, p.fingerprint, address, {
          log: log.child('agent'),
          socksHandshakeMs: this.opts.socksHandshakeMs,
          exposeHandshakeMs: this.opts.exposeHandshakeMs,
          publicAddress: this.opts.publicAddress ?? local,
          hostFingerprint: this.fingerprint,
          namedOpens,
          allocatePort: () => this.allocatePort(),
          createSession: (l, d) => this.createSession(l, d, log),
        });
        conn.once('close', () => link.markClosed());
        return;
      }
      const session = p.session;
      if (session.ended) return void conn.end();
      const info: HelperInfo = { id: this.nextHelperId++, fingerprint: p.fingerprint, address };
      const hlog = log.child(`session ${session.redactedCode} › helper#${info.id}`);
      const link = handleHelper(conn, session, info, hlog, this.metrics);
      hlog.info('helper joined', { event: 'helper-joined', session: session.redactedCode, helper: info.id, fingerprint: info.fingerprint, address });
      session.broadcast({ event: 'helper-joined', helper: info, helpers: session.helpers.size }, info.id);
      conn.once('close', () => {
        if (session.helpers.get(info.id) !== link) return;
        session.helpers.delete(info.id);
        hlog.info('helper left', { event: 'helper-left', session: session.redactedCode, helper: info.id });
        if (!session.ended) session.broadcast({ event: 'helper-left', helper: info, helpers: session.helpers.size, reason: 'disconnected' });
      });
    });
  }

  /**
   * A peer that does not finish the SSH handshake and authenticate in time is only
   * holding a socket: cut it. Armed when the TCP connection arrives (ssh2 reports a
   * connection only once the peer has sent its version line, so a silent peer would
   * otherwise be held forever), disarmed on authentication.
   */
  private armHandshakeTimer(socket: net.Socket): void {
    if (this.handshakeTimers.has(socket)) return;
    const timer = setTimeout(() => {
      this.log.info('no SSH authentication in time; disconnecting', {
        event: 'handshake-timeout', address: formatHostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0), timeoutMs: this.opts.sshHandshakeMs,
      });
      socket.destroy();
    }, this.opts.sshHandshakeMs);
    timer.unref();
    this.handshakeTimers.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  }

  private createSession(link: AgentLink, descriptor: Descriptor, log: Logger): Session {
    if (this.closing) throw new BrokerError('BRK_INTERNAL', 'the broker is shutting down');
    if (this.registry.size >= this.opts.maxSessions) {
      throw new BrokerError('BRK_SESSION_FULL', `the broker holds its maximum of ${this.opts.maxSessions} sessions; try again later`);
    }
    const session = new Session(this.nextSessionId++, generateSessionCode(), descriptor, descriptorPolicy(descriptor), link);
    this.registry.add(session);
    log.info('session created', {
      event: 'session-created', session: session.redactedCode, label: descriptor.label, agentKey: link.fingerprint,
      deviceStreams: link.namedOpens ? 'named-open' : 'socks',
    });
    this.emit('session-created', session);
    return session;
  }

  private allocatePort(): number {
    const p = this.nextPort;
    this.nextPort = this.nextPort >= 65535 ? 10_000 : this.nextPort + 1;
    return p;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

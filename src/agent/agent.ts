/**
 * `broker-agent expose`: the device side. Connects out to the broker, asks for a
 * reverse tunnel (`tcpip-forward`), publishes its descriptor on the control
 * channel, and serves each `forwarded-tcpip` stream, enforcing its own policy (it
 * never trusts the broker to do so). It announces named opens (`protocol/named-open.ts`):
 * our broker then names the target in the open itself, and the agent dials before it
 * accepts; other opens carry SOCKS5, as under stock `ssh -R`.
 */
import { EventEmitter } from 'node:events';
import type { Client, ClientChannel } from 'ssh2';
import { BrokerError, describeError, OpenFailure, toOpenFailure } from '../errors';
import { silentLogger, type Logger } from '../log';
import { AGENT_FORWARD_ADDR, EXPOSE_COMMAND, EXPOSE_USER, Limits, NAMED_OPENS, PROTOCOL_VERSION, Timeouts } from '../protocol/constants';
import { readControlEvents, type ControlEvent } from '../protocol/control';
import { descriptorPolicy, type Descriptor } from '../protocol/descriptor';
import { NAMED_OPEN_FEATURE, parseNamedOpen } from '../protocol/named-open';
import { formatTarget, type Target } from '../protocol/target';
import type { Policy } from '../policy/policy';
import { generateIdentity, type Identity } from '../transport/keys';
import { rejectChannel } from '../transport/open-failure';
import { watchRoundTrip } from '../transport/round-trip';
import { connectSsh, execChannel } from '../transport/ssh-client';
import { acceptWithStreamWindow } from '../transport/stream-window';
import { serveNamedOpen } from './named-responder';
import { serveSocksStream, type StreamReport } from './socks-responder';

export interface ExposeOptions {
  broker: string;
  descriptor: Descriptor;
  identity?: Identity;
  fingerprint?: string;
  knownBrokersFile?: string;
  dialTimeoutMs?: number;
  /** Most streams the broker may have open or opening on this device at once (default Limits.channelsPerConnection). */
  maxStreams?: number;
  log?: Logger;
}

/** Events an exposing agent reports (the CLI prints them; `--json` prints them as lines). */
export interface AgentEvents {
  event: [ControlEvent];
  'stream-opened': [{ helper: number; target: string; rep: number; reason: string }];
  'stream-closed': [{ helper: number; target: string; sent: number; received: number; durationMs: number }];
  'new-host-key': [string];
  /** The session is over (ended by the broker, or the connection was lost). */
  ended: [BrokerError];
}

export class Agent extends EventEmitter<AgentEvents> {
  private client: Client | undefined;
  private control: ClientChannel | undefined;
  private readonly policy: Policy;
  private readonly log: Logger;
  private closed = false;
  private endedEmitted = false;
  /** Streams open or being opened (a broker that floods the device is refused beyond maxStreams). */
  private streams = 0;
  /** The session code, once the broker has created the session. */
  code: string | undefined;

  constructor(private readonly opts: ExposeOptions) {
    super();
    this.policy = descriptorPolicy(opts.descriptor);
    this.log = opts.log ?? silentLogger;
  }

  /** Connect, expose, and resolve with the `session` event once the broker created the session. */
  async start(): Promise<Extract<ControlEvent, { event: 'session' }>> {
    const identity = this.opts.identity ?? generateIdentity('broker-agent expose');
    const { client } = await connectSsh({
      broker: this.opts.broker, username: EXPOSE_USER, identity,
      features: NAMED_OPENS ? [NAMED_OPEN_FEATURE] : [],
      fingerprint: this.opts.fingerprint, knownBrokersFile: this.opts.knownBrokersFile,
      onNewHostKey: (fp) => this.emit('new-host-key', fp),
    });
    this.client = client;
    watchRoundTrip(client);
    client.on('tcp connection', (info, accept, reject) => {
      const max = this.opts.maxStreams ?? Limits.channelsPerConnection;
      if (this.streams >= max) {
        this.log.warn('refused a stream: too many at once from the broker', { max });
        return rejectChannel(client, reject, OpenFailure.RESOURCE_SHORTAGE, `BRK_RATE_LIMITED: more than ${max} streams at once on this device`);
      }
      const open = parseNamedOpen(info.srcIP, info.srcPort);
      // Uploads flow broker -> device: what one stream has in flight is what every other
      // stream's request waits behind, over a slow device downlink and on loopback alike
      // (there the device, which decrypts, is the slowest stage). So they get the broker's
      // download rules on every leg (no WindowScope.longOnly): a window by time while alone
      // or among bulk streams, the cap while a light stream is active. Loopback, helper B's
      // tiny requests while A uploads (A/B × 3): B p50 6.79 -> 0.53 ms; A 541 -> 287 MiB/s.
      const acceptSized = () => acceptWithStreamWindow(client, accept);
      if (open.kind === 'socks') return this.serve(acceptSized()!, info.srcPort);
      if (open.kind === 'connect') return this.serveNamed(client, open.helper, open.target, acceptSized, reject);
      // A probe (the broker timing this link) or a named open we cannot read: refuse at once.
      const err = open.kind === 'probe' ? new BrokerError('BRK_BAD_REQUEST', 'probe') : open.error;
      if (open.kind === 'invalid') this.log.warn('refused a malformed stream request from the broker', { code: err.code, reason: err.message });
      rejectChannel(client, reject, toOpenFailure(err.code), `${err.code}: ${err.message}`);
    });
    client.on('error', (err) => this.log.debug('ssh error', { error: describeError(err) }));
    client.once('close', () => this.finish(new BrokerError('BRK_BROKER_UNREACHABLE', 'connection to the broker was lost')));

    await new Promise<number>((resolve, reject) => {
      client.forwardIn(AGENT_FORWARD_ADDR, 0, (err, port) => {
        if (err) reject(new BrokerError('BRK_INTERNAL', `the broker refused the reverse tunnel: ${describeError(err)}`));
        else resolve(port);
      });
    });
    const control = await execChannel(client, EXPOSE_COMMAND);
    this.control = control;
    control.write(`${JSON.stringify({ type: 'expose', version: PROTOCOL_VERSION, descriptor: this.opts.descriptor })}\n`);

    const onEvent = (ev: Record<string, unknown>) => {
      this.emit('event', ev as ControlEvent);
      if (ev.event === 'session-ended') {
        this.finish(new BrokerError('BRK_SESSION_ENDED', `session ended: ${String(ev.message ?? ev.reason)}`));
      }
    };
    const session = await readControlEvents(control, 'session', onEvent).catch((err) => { this.close(); throw err; });
    if (typeof session.code !== 'string') {
      this.close();
      throw new BrokerError('BRK_INTERNAL', 'the broker sent a session without a code');
    }
    this.code = session.code;
    this.emit('event', session as ControlEvent);
    return session as Extract<ControlEvent, { event: 'session' }>;
  }

  /** A stream as SOCKS5 on the channel (stock convention, brokers without named opens). */
  private serve(channel: ClientChannel, originPort: number): void {
    const track = this.trackStream(originPort);
    void serveSocksStream(channel, {
      policy: this.policy,
      timeoutMs: this.opts.dialTimeoutMs ?? Timeouts.dial,
      handshakeTimeoutMs: Timeouts.socksHandshake,
      onOpen: track.opened,
    }).then(track.closed);
  }

  /** A named open: dial, then accept the channel or refuse it with the exact outcome. */
  private serveNamed(client: Client, helper: number, target: Target, accept: () => ClientChannel | undefined, reject: () => void): void {
    const track = this.trackStream(helper);
    void serveNamedOpen(helper, target, () => (this.closed ? undefined : accept()), (err) => {
      if (!this.closed) rejectChannel(client, reject, toOpenFailure(err.code), `${err.code}: ${err.message}`);
    }, {
      policy: this.policy,
      timeoutMs: this.opts.dialTimeoutMs ?? Timeouts.dial,
      onOpen: track.opened,
    }).then(track.closed);
  }

  /** Log and emit a stream's outcome and, once it is over, its totals. */
  private trackStream(helperId: number): { opened: (r: StreamReport) => void; closed: (r: StreamReport) => void } {
    let opened = Date.now();
    let helper = helperId;
    this.streams++;
    return {
      opened: (r) => {
        opened = Date.now();
        helper = r.helper ?? helper;
        const target = r.target ? formatTarget(r.target) : '?';
        this.log.info(r.rep === 0 ? 'stream opened' : 'stream refused', { helper, dest: target, rep: r.rep, reason: r.reason });
        this.emit('stream-opened', { helper, target, rep: r.rep, reason: r.reason });
      },
      closed: (r) => {
        this.streams--;
        if (r.rep !== 0 || !r.target || !r.result) return;
        const ev = { helper, target: formatTarget(r.target), sent: r.result.bToA, received: r.result.aToB, durationMs: Date.now() - opened };
        this.log.debug('stream closed', ev);
        this.emit('stream-closed', ev);
      },
    };
  }

  private finish(err: BrokerError): void {
    // a close() we were asked for is not an 'ended' error (the SSH 'close' that follows it is expected)
    if (this.endedEmitted || this.closed) return;
    this.endedEmitted = true;
    this.close();
    this.emit('ended', err);
  }

  /** End the session and disconnect. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.control?.close();
    this.client?.end();
  }
}

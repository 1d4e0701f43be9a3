/**
 * The broker's handle on one agent: its SSH connection, its reverse tunnel
 * (`tcpip-forward` binding) and its control channel. Streams to the device are
 * `forwarded-tcpip` channels. To agents that announce it, the open names the target
 * (`protocol/named-open.ts`): the device dials before it confirms, so a stream costs
 * one round trip and two packets, and nothing is opened in advance. To the others
 * (stock `ssh -R 0`, older native agents) the channel carries SOCKS5 (OpenSSH's
 * remote dynamic forwarding convention), on channels kept open in advance.
 */
import type { Connection, ServerChannel } from 'ssh2';
import { BrokerError, describeError } from '../errors';
import type { ControlEvent } from '../protocol/control';
import { POOL_DECAY_MS, POOL_MAX, POOL_SIZE } from '../protocol/constants';
import { encodeNamedOpen, encodeProbe } from '../protocol/named-open';
import { requestSocksConnect, type SocksConnectReply } from '../protocol/socks-handshake';
import { helperLabel } from '../protocol/socks-auth';
import { UNKNOWN_BOUND } from '../protocol/socks5';
import { ChannelPool } from '../transport/channel-pool';
import { awaitNamedOpen } from '../transport/open-failure';
import { limitSendWindow } from '../transport/send-window';
import { capReceiveWindow, markStreamInUse, noteRoundTrip, openWithStreamWindow } from '../transport/stream-window';
import { formatTarget, type Target } from '../protocol/target';

/** Result of asking the device to connect somewhere. */
export interface AgentStream extends SocksConnectReply {
  /** The channel; on success it is ready for data, on failure it is already closed. */
  channel: ServerChannel;
}

/** Who is asking, passed to the agent as the forwarded-tcpip originator (helper id as port). */
export interface StreamOrigin {
  helperId: number;
  address: string;
}

/** Probes sent when the session starts (the fastest one counts: the first may meet a cold device). */
const INITIAL_PROBES = 3;
/** While streams open, the device leg is probed again at most this often. */
const PROBE_INTERVAL_MS = 1000;

export class AgentLink {
  /** The `tcpip-forward` binding the agent asked for, with the port we assigned. */
  binding: { addr: string; port: number } | undefined;
  /** Writes control events to the agent (JSON or plain text). */
  eventSink: ((ev: ControlEvent) => void) | undefined;
  /** A native agent (JSON control channel) understands the helper label in SOCKS auth. */
  native = false;
  private closed = false;
  private pool: ChannelPool<ServerChannel> | undefined;
  private lastProbe = 0;

  constructor(
    readonly conn: Connection,
    readonly fingerprint: string,
    readonly address: string,
    private readonly handshakeTimeoutMs: number,
    /** The agent reads named opens (it said so in its SSH identification). */
    readonly namedOpens = false,
  ) {
    conn.once('close', () => { this.closed = true; });
  }

  /** True while the SSH connection is up and the reverse tunnel is bound (what the sweeper checks). */
  alive(): boolean {
    return !this.closed && this.binding !== undefined;
  }

  markClosed(): void {
    this.closed = true;
    this.pool?.close();
  }

  sendEvent(ev: ControlEvent): void {
    if (!this.closed) this.eventSink?.(ev);
  }

  /** The session started: measure the device leg (named opens), or keep channels ready for SOCKS streams. */
  startStreams(): void {
    if (this.namedOpens) this.probe(INITIAL_PROBES);
    else this.startPool();
  }

  /** Keep a few tunnel channels open, so a SOCKS stream starts with its first write. */
  private startPool(): void {
    if (POOL_SIZE <= 0 || this.pool) return;
    this.pool = new ChannelPool(() => this.openChannel('127.0.0.1', 0), POOL_SIZE, { max: POOL_MAX, decayMs: POOL_DECAY_MS });
    this.pool.fill();
  }

  /** Open a stream to `target` on the device: a named open, or SOCKS5 on a (pre-opened) channel. */
  async openStream(target: Target, origin: StreamOrigin): Promise<AgentStream> {
    // Also guards the pool: a cancelled tunnel must not hand out pre-opened channels.
    if (!this.binding || this.closed) throw offline();
    if (this.namedOpens) return this.openNamed(target, origin.helperId);
    const channel = this.pool
      ? await this.pool.take()
      : await this.openChannel(origin.address, ((origin.helperId - 1) % 65535) + 1);
    markStreamInUse(channel);
    // Stock `ssh -R` devices grant every stream 2 MiB: hold uploads back while a light stream is active.
    limitSendWindow(channel);
    try {
      // Greeting, helper label (native agents) and request in one write: one round trip.
      const reply = await requestSocksConnect(channel, target, {
        timeoutMs: this.handshakeTimeoutMs,
        peer: 'the device',
        label: this.native ? helperLabel(origin.helperId) : undefined,
      });
      return { ...reply, channel };
    } catch (err) {
      channel.destroy();
      if (err instanceof BrokerError && err.code === 'BRK_TIMEOUT') {
        throw new BrokerError('BRK_TIMEOUT', `${formatTarget(target)}: the device did not answer within ${this.handshakeTimeoutMs} ms`);
      }
      throw err instanceof BrokerError ? err : new BrokerError('BRK_INTERNAL', describeError(err), { cause: err });
    }
  }

  /** Disconnect the agent. */
  close(): void {
    this.closed = true;
    this.pool?.close();
    this.conn.end();
  }

  /** Open a channel whose open (request to confirmation) times the device leg. */
  private openChannel(originAddr: string, originPort: number): Promise<ServerChannel> {
    const asked = performance.now();
    return this.forwardOut(originAddr, originPort).then(
      (ch) => {
        noteRoundTrip(this.conn, performance.now() - asked);
        return ch;
      },
      (err: unknown) => {
        throw err instanceof BrokerError ? err : new BrokerError('BRK_AGENT_OFFLINE', `the device refused a tunnel stream: ${describeError(err)}`, { cause: err });
      },
    );
  }

  /** The device dials `target` before it confirms; a refusal carries its exact outcome. */
  private async openNamed(target: Target, helperId: number): Promise<AgentStream> {
    if (Date.now() - this.lastProbe >= PROBE_INTERVAL_MS) this.probe(1);
    const { originAddr, originPort } = encodeNamedOpen(target, helperId);
    const channel = await awaitNamedOpen(() => this.forwardOut(originAddr, originPort), target, { timeoutMs: this.handshakeTimeoutMs, peer: 'the device' });
    markStreamInUse(channel);
    // A named open's confirmation does not say where the device connected from.
    return { rep: 0, reason: 'succeeded', bound: UNKNOWN_BOUND, channel };
  }

  /**
   * Time an open the device refuses at once: the device leg's round trip without a
   * dial, which lets the window cap leave room for data in flight on a long link.
   */
  private probe(count: number): void {
    if (count <= 0 || this.closed) return;
    this.lastProbe = Date.now();
    const { originAddr, originPort } = encodeProbe();
    const asked = performance.now();
    this.forwardOut(originAddr, originPort).then(
      (ch) => ch.destroy(), // only an agent that broke its word accepts a probe
      (err: unknown) => {
        if (err instanceof BrokerError) return; // the tunnel is gone
        noteRoundTrip(this.conn, performance.now() - asked);
        this.probe(count - 1);
      },
    );
  }

  /** A `forwarded-tcpip` open through the agent's tunnel, its receive window capped. */
  private forwardOut(originAddr: string, originPort: number): Promise<ServerChannel> {
    const binding = this.binding;
    if (!binding || this.closed) return Promise.reject(offline());
    return new Promise<ServerChannel>((resolve, reject) => {
      // Downloads flow device → broker: keep one stream from filling this connection's buffers,
      // from its opening window on.
      openWithStreamWindow(this.conn, () => this.conn.forwardOut(binding.addr, binding.port, originAddr, originPort, (err, ch) => {
        if (err) return reject(err);
        capReceiveWindow(ch);
        resolve(ch);
      }));
    });
  }
}

function offline(): BrokerError {
  return new BrokerError('BRK_AGENT_OFFLINE', 'the device is not connected (its tunnel is down)');
}

/**
 * The broker's handle on one agent: its SSH connection, its reverse tunnel
 * (`tcpip-forward` binding) and its control channel. Streams to the device are
 * `forwarded-tcpip` channels carrying SOCKS5 (OpenSSH's remote dynamic forwarding
 * convention), so a stock `ssh -R 0` client can be an agent too.
 */
import type { Connection, ServerChannel } from 'ssh2';
import { BrokerError, describeError } from '../errors';
import type { ControlEvent } from '../protocol/control';
import { POOL_DECAY_MS, POOL_MAX, POOL_SIZE } from '../protocol/constants';
import { requestSocksConnect, type SocksConnectReply } from '../protocol/socks-handshake';
import { helperLabel } from '../protocol/socks-auth';
import { ChannelPool } from '../transport/channel-pool';
import { capReceiveWindow, markStreamInUse, noteRoundTrip } from '../transport/stream-window';
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

export class AgentLink {
  /** The `tcpip-forward` binding the agent asked for, with the port we assigned. */
  binding: { addr: string; port: number } | undefined;
  /** Writes control events to the agent (JSON or plain text). */
  eventSink: ((ev: ControlEvent) => void) | undefined;
  /** A native agent (JSON control channel) understands the helper label in SOCKS auth. */
  native = false;
  private closed = false;
  private pool: ChannelPool<ServerChannel> | undefined;

  constructor(
    readonly conn: Connection,
    readonly fingerprint: string,
    readonly address: string,
    private readonly handshakeTimeoutMs: number,
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

  /** Start keeping a few tunnel channels open, so a stream starts with its first write. */
  startPool(size = POOL_SIZE, max = POOL_MAX): void {
    if (size <= 0 || this.pool) return;
    this.pool = new ChannelPool(() => this.openChannel('127.0.0.1', 0), size, { max, decayMs: POOL_DECAY_MS });
    this.pool.fill();
  }

  private openChannel(originAddr: string, originPort: number): Promise<ServerChannel> {
    const binding = this.binding;
    if (!binding || this.closed) return Promise.reject(new BrokerError('BRK_AGENT_OFFLINE', 'the device is not connected (its tunnel is down)'));
    const asked = performance.now();
    return new Promise<ServerChannel>((resolve, reject) => {
      this.conn.forwardOut(binding.addr, binding.port, originAddr, originPort, (err, ch) => {
        if (err) return reject(new BrokerError('BRK_AGENT_OFFLINE', `the device refused a tunnel stream: ${describeError(err)}`, { cause: err }));
        // Downloads flow device → broker: keep one stream from filling this connection's buffers
        // (the open's round trip tells how far the device is: a long link gets room for what is in flight).
        capReceiveWindow(ch);
        noteRoundTrip(ch, performance.now() - asked);
        resolve(ch);
      });
    });
  }

  /** Open a stream through the reverse tunnel and run the SOCKS5 handshake (pipelined). */
  async openStream(target: Target, origin: StreamOrigin): Promise<AgentStream> {
    // Also guards the pool: a cancelled tunnel must not hand out pre-opened channels.
    if (!this.binding || this.closed) throw new BrokerError('BRK_AGENT_OFFLINE', 'the device is not connected (its tunnel is down)');
    const channel = this.pool
      ? await this.pool.take()
      : await this.openChannel(origin.address, ((origin.helperId - 1) % 65535) + 1);
    markStreamInUse(channel);
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
}

/**
 * The one thing front-ends need from the tunnel: "open a stream to host:port".
 * The SSH implementation opens a `direct-streamlocal` channel to the broker's
 * in-band SOCKS endpoint and pipelines greeting + CONNECT in one write, so a new
 * connection costs one round trip to the device; the device's exact reply code
 * (and its one-line reason) comes back as a typed error.
 */
import type { Duplex } from 'node:stream';
import type { Client, ClientChannel } from 'ssh2';
import { BrokerError, describeError, fromSocksReply } from '../errors';
import { POOL_DECAY_MS, POOL_MAX, POOL_SIZE, SOCKS_STREAM_PATH, Timeouts } from '../protocol/constants';
import { ChannelPool } from '../transport/channel-pool';
import { requestSocksConnect } from '../protocol/socks-handshake';
import type { Target } from '../protocol/target';

/** A connected stream plus the address the device connected from. */
export interface OpenedStream {
  stream: Duplex;
  bound: { host: string; port: number };
}

/** What SOCKS/HTTP front-ends depend on; they never touch ssh2. */
export interface StreamOpener {
  open(target: Target, signal?: AbortSignal): Promise<OpenedStream>;
}

/** StreamOpener over an SSH connection to the broker, with a few channels opened in advance. */
export class SshStreamOpener implements StreamOpener {
  private readonly pool: ChannelPool<ClientChannel> | undefined;

  constructor(private readonly client: Client, private readonly handshakeTimeoutMs = Timeouts.socksHandshake + Timeouts.dial + 2000, poolSize = POOL_SIZE, poolMax = POOL_MAX) {
    if (poolSize > 0) {
      this.pool = new ChannelPool(() => this.openChannel(), poolSize, { max: poolMax, decayMs: POOL_DECAY_MS });
      this.pool.fill();
    }
  }

  private openChannel(): Promise<ClientChannel> {
    return new Promise<ClientChannel>((resolve, reject) => {
      this.client.openssh_forwardOutStreamLocal(SOCKS_STREAM_PATH, (err, ch) => {
        if (err) reject(new BrokerError('BRK_SESSION_ENDED', `the broker refused a stream: ${describeError(err)}`, { cause: err }));
        else resolve(ch);
      });
    });
  }

  /** Drop pre-opened channels (on leave). */
  close(): void {
    this.pool?.close();
  }

  async open(target: Target, signal?: AbortSignal): Promise<OpenedStream> {
    const channel = this.pool ? await this.pool.take() : await this.openChannel();
    const onAbort = () => channel.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const reply = await requestSocksConnect(channel, target, { timeoutMs: this.handshakeTimeoutMs, peer: 'the broker', signal });
      if (reply.rep === 0) return { stream: channel, bound: reply.bound };
      throw new BrokerError(fromSocksReply(reply.rep), reply.reason);
    } catch (err) {
      channel.destroy();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}

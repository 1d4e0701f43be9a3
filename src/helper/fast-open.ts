/**
 * Fast open (`broker-agent join --fast-open`): a local client hears "connected" at
 * once, and its first bytes travel to the device with the request instead of a round
 * trip behind it.
 *
 * A SOCKS or CONNECT client sends nothing until it is told the stream is open. The
 * usual path answers only once the device has connected (the exact outcome, one end-
 * to-end round trip), so a client's first response byte comes two round trips after
 * its CONNECT, the least possible for an exact answer. Fast open answers "succeeded" at
 * once and sends the request plus whatever the client writes next on a channel opened
 * in advance (SOCKS5 in-band to the broker, which keeps what follows the request and
 * relays it once the device has connected): over the emulated WAN the first byte
 * comes after 1.7 round trips instead of 2.2 (its floor is 1.5).
 *
 * The price is the exact answer, so it is paid only where an answer could differ:
 * - a target the device's descriptor (which the helper has) denies is refused here,
 *   at once, with the same code and reason the broker would give;
 * - a name that the descriptor allows only if it resolves into an allowed range
 *   ("resolve-on-device") takes the usual path: the device decides, exactly;
 * - a target the descriptor allows outright is answered at once. If the device then
 *   cannot connect (refused, unreachable, timed out) the client's connection is
 *   reset, not closed (an empty reply must not pass for an answer), and the exact
 *   reason still reaches the stream event that `join` prints.
 *
 * Plain requests through the HTTP proxy (`GET http://…`) gain the same round trip
 * without that price (`openEarly`): the request goes out before the device has
 * answered, but nobody was told anything early, so a refusal still becomes the exact
 * HTTP status.
 */
import type net from 'node:net';
import { Duplex } from 'node:stream';
import type { Client, ClientChannel } from 'ssh2';
import { BrokerError, describeError, fromSocksReply } from '../errors';
import { RESOLVE_ON_DEVICE, type Policy } from '../policy/policy';
import { POOL_DECAY_MS, POOL_MAX, SOCKS_STREAM_PATH, Timeouts } from '../protocol/constants';
import { requestSocksConnect, type SocksConnectReply } from '../protocol/socks-handshake';
import type { Target } from '../protocol/target';
import { ChannelPool } from '../transport/channel-pool';
import { watchWhileOpening } from '../transport/early-close';
import { relay } from '../transport/relay';
import { capReceiveWindow, markStreamInUse, openWithStreamWindow, STREAM_WINDOW, type WindowScope } from '../transport/stream-window';

/** Channels kept open in advance (they grow with bursts up to POOL_MAX, as the broker's do). */
export const FAST_OPEN_POOL = Math.max(1, Math.min(32, Number(process.env.BROKER_FAST_OPEN_POOL ?? 4) || 4));

/** As in stream-opener.ts: the helper's leg is capped only when it is long. */
const HELPER_LEG: WindowScope = { longOnly: true };

/** What the descriptor alone says about a target. */
export type FastOpenVerdict =
  /** Allowed outright: answer "succeeded" now. */
  | 'now'
  /** Allowed only if the device's DNS agrees: take the usual, exact path. */
  | 'wait'
  /** Denied: refuse with this error now. */
  | BrokerError;

/** How a fast-opened stream ended (what the front-end reports in its stream event). */
export interface FastOpenOutcome {
  /** The device's SOCKS reply byte (0 = it connected; the stream was relayed). */
  rep: number;
  reason: string;
  sent?: number;
  received?: number;
  durationMs?: number;
}

export class FastOpener {
  private readonly pool: ChannelPool<ClientChannel>;

  constructor(
    private readonly client: Client,
    private readonly policy: Policy,
    private readonly replyTimeoutMs = Timeouts.socksHandshake + Timeouts.dial + 2000,
    poolSize = FAST_OPEN_POOL,
  ) {
    this.pool = new ChannelPool(() => this.openChannel(), poolSize, { max: Math.max(poolSize, POOL_MAX), decayMs: POOL_DECAY_MS });
    this.pool.fill();
  }

  /** Whether `target` may be answered at once, refused at once, or must wait for the device. */
  judge(target: Target): FastOpenVerdict {
    const decision = this.policy.checkRequest(target);
    if (!decision.allowed) return new BrokerError(decision.code, decision.reason);
    return decision.rule === RESOLVE_ON_DEVICE ? 'wait' : 'now';
  }

  /**
   * The client on `socket` has been told the stream is open: send the request and what
   * the client writes (`head` first) to the device, and relay the stream once the device
   * has connected. Resolves when the stream is over; undefined if the client left before
   * the device answered. Never rejects. `onOpen` runs when the device has connected.
   */
  async carry(socket: net.Socket, target: Target, opts: { head?: Buffer; onOpen?: () => void } = {}): Promise<FastOpenOutcome | undefined> {
    const head = opts.head ?? EMPTY;
    const watch = watchWhileOpening(socket);
    let channel: ClientChannel;
    try {
      channel = await this.pool.take();
    } catch (err) {
      watch.stop();
      return fail(socket, undefined, err);
    }
    const early = watch.stop();
    if (socket.destroyed || watch.signal.aborted) {
      channel.destroy();
      socket.destroy();
      return undefined;
    }
    const answered = this.request(channel, target);
    if (head.length > 0 || early.length > 0) channel.write(Buffer.concat([head, early]));
    const forwarding = forwardUntilAnswered(socket, channel);
    const answer = await answered.then((reply) => ({ reply }), (err: unknown) => ({ err }));
    forwarding.stop();
    if (forwarding.clientLeft) {
      channel.destroy();
      return undefined;
    }
    if ('err' in answer) return fail(socket, channel, answer.err);
    const { rep, reason } = answer.reply;
    if (rep !== 0) return fail(socket, channel, new BrokerError(fromSocksReply(rep), reason));
    opts.onOpen?.();
    const r = await relay(socket, channel);
    const before = head.length + early.length + forwarding.bytes;
    return { rep: 0, reason: 'succeeded', sent: before + r.aToB, received: r.bToA, durationMs: r.durationMs };
  }

  /**
   * A stream to `target` to write on at once (the HTTP proxy's upstream requests): what is
   * written goes out behind the request before the device has answered; what the device
   * sends is readable once it has connected. A refusal destroys the stream with the exact
   * error before anything was readable, so the HTTP proxy still answers with the exact
   * status (no early answer was given to anyone). Resolves once a channel is in hand.
   */
  async openEarly(target: Target): Promise<Duplex> {
    const channel = await this.pool.take();
    return new EarlyStream(channel, this.request(channel, target));
  }

  /** Put a pooled channel to use: the SOCKS request for `target`, and the broker's answer to come. */
  private request(channel: ClientChannel, target: Target): Promise<SocksConnectReply> {
    markStreamInUse(channel);
    return requestSocksConnect(channel, target, { timeoutMs: this.replyTimeoutMs, peer: 'the broker' });
  }

  /** Drop the channels opened in advance (on leave). */
  close(): void {
    this.pool.close();
  }

  private openChannel(): Promise<ClientChannel> {
    return new Promise<ClientChannel>((resolve, reject) => {
      openWithStreamWindow(this.client, () => this.client.openssh_forwardOutStreamLocal(SOCKS_STREAM_PATH, (err, ch) => {
        if (err) return reject(new BrokerError('BRK_SESSION_ENDED', `the broker refused a stream: ${describeError(err)}`, { cause: err }));
        capReceiveWindow(ch, STREAM_WINDOW, HELPER_LEG);
        resolve(ch);
      }), HELPER_LEG);
    });
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * The device did not connect after the client was told it had: reset the client's
 * connection (a FIN would look like an empty answer) and report the exact reason.
 */
function fail(socket: net.Socket, channel: Duplex | undefined, err: unknown): FastOpenOutcome {
  channel?.destroy();
  if (!socket.destroyed) socket.resetAndDestroy();
  const e = err instanceof BrokerError ? err : new BrokerError('BRK_INTERNAL', describeError(err));
  return { rep: e.socksReply, reason: e.message };
}

interface Forwarding {
  /** The client closed its connection (not just its sending side) before the answer. */
  readonly clientLeft: boolean;
  /** Bytes passed on. */
  readonly bytes: number;
  stop(): void;
}

/**
 * Until the broker answers: what the client writes goes on to the channel (the broker
 * holds it until the device has connected), nothing comes back. A client that ends its
 * side is left ended; the relay that follows passes the EOF on.
 */
function forwardUntilAnswered(socket: net.Socket, channel: Duplex): Forwarding {
  let clientLeft = false;
  let bytes = 0;
  const resume = () => socket.resume();
  const onData = (chunk: Buffer) => {
    if (channel.destroyed) return;
    bytes += chunk.length;
    if (!channel.write(chunk)) {
      socket.pause();
      channel.once('drain', resume);
    }
  };
  const onClose = () => {
    clientLeft = true;
    channel.destroy();
  };
  socket.on('data', onData);
  socket.once('close', onClose);
  socket.resume();
  return {
    get clientLeft() { return clientLeft; },
    get bytes() { return bytes; },
    stop() {
      socket.off('data', onData);
      socket.off('close', onClose);
      channel.off('drain', resume);
      socket.pause();
    },
  };
}

/**
 * A channel whose SOCKS answer is still to come, as a plain stream: writes go straight to
 * the channel; reads start after the answer, which is never passed on. A failure answer
 * destroys the stream with the device's exact error.
 */
class EarlyStream extends Duplex {
  private open = false;

  constructor(private readonly channel: Duplex, answered: Promise<SocksConnectReply>) {
    super({ allowHalfOpen: true });
    channel.on('error', (err: Error) => this.destroy(err));
    answered.then(
      ({ rep, reason }) => {
        if (rep !== 0) return void this.destroy(new BrokerError(fromSocksReply(rep), reason));
        this.open = true;
        channel.on('data', (chunk: Buffer) => { if (!this.push(chunk)) channel.pause(); });
        channel.once('end', () => this.push(null));
        channel.once('close', () => { if (!this.readableEnded) this.destroy(); });
        channel.resume();
      },
      (err: unknown) => this.destroy(err instanceof Error ? err : new BrokerError('BRK_INTERNAL', describeError(err))),
    );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.channel.write(chunk)) callback();
    else this.channel.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.channel.end();
    callback();
  }

  override _read(): void {
    if (this.open) this.channel.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.channel.destroy();
    callback(err);
  }
}

/**
 * A smaller receive window for tunnel streams while they share their connection.
 *
 * ssh2 grants every channel a fixed 2 MiB window. When the broker is the slowest
 * stage of a download, up to 2 MiB of that stream waits in the kernel buffers of
 * the device's SSH connection, and every other stream on that connection (another
 * helper's tiny request, a new connection's handshake) queues behind it. Capping
 * the credit we re-grant keeps at most `cap` bytes of any one stream in flight,
 * so small streams pass bulk ones quickly.
 *
 * The cap costs throughput (the stages of the relay can run less far ahead of
 * each other: one download alone went from ~450 to ~380 MiB/s on loopback), and
 * it only buys anything when another stream is there to be delayed. So it holds
 * while the connection is *shared*: at least two streams in use
 * (`markStreamInUse`; pre-opened pool channels do not count), or two were in use
 * less than `SHARED_HOLD_MS` ago (sequential short streams keep it shared). A
 * stream alone gets ssh2's full window; once others appear, its credit drains to
 * the cap within one window.
 *
 * How: ssh2 re-grants by adding to `incoming.window` and then calling the
 * protocol's `channelWindowAdjust(id, amount)`. While shared we shrink that amount
 * so the peer's credit never exceeds `cap` (keeping ssh2's accounting equal to
 * what the peer was really granted), and re-grant only once half the cap is spent
 * (one adjust per cap/2 bytes, not one per packet). The channel's readable buffer
 * is lowered to `cap`, so user-space buffering stays bounded by the window either
 * way. If ssh2's internals differ from what this expects, nothing is changed.
 */
import type { Duplex } from 'node:stream';

/** Default cap (BROKER_STREAM_WINDOW bytes; 0 keeps ssh2's 2 MiB). */
export const STREAM_WINDOW = Math.max(0, Number(process.env.BROKER_STREAM_WINDOW ?? 128 * 1024) || 0);

/** How long a connection stays "shared" after its second-to-last stream in use closed. */
export const SHARED_HOLD_MS = 1000;

interface ChannelInternals {
  incoming: { window: number };
  outgoing: { id: number };
  _client?: { _protocol?: ProtocolInternals };
  _readableState?: { highWaterMark: number };
}

interface Entry {
  ch: ChannelInternals;
  cap: number;
  inUse: boolean;
}

/** Per SSH connection: its capped channels and how many of them carry a stream. */
interface Registry {
  entries: Map<number, Entry>;
  inUse: number;
  /** When the connection last stopped having two or more streams in use. */
  sharedUntil: number;
}

interface ProtocolInternals {
  channelWindowAdjust?: (recipient: number, amount: number) => unknown;
  [CAPS]?: Registry;
}

const CAPS = Symbol('windowCaps');
/** Re-grant once the peer's credit falls to this fraction of the cap: one adjust per cap/2 bytes. */
const REGRANT_AT = 0.5;

function isShared(reg: Registry): boolean {
  return reg.inUse >= 2 || Date.now() < reg.sharedUntil;
}

/** Give `proto` a registry and route its window adjusts through the cap. */
function installRegistry(proto: ProtocolInternals, original: (recipient: number, amount: number) => unknown): Registry {
  const registry: Registry = { entries: new Map(), inUse: 0, sharedUntil: 0 };
  proto[CAPS] = registry;
  proto.channelWindowAdjust = function capped(this: unknown, recipient: number, amount: number) {
    const entry = registry.entries.get(recipient);
    if (entry && isShared(registry)) {
      // ssh2 calls this on every data packet once below its 1 MiB threshold (always, under a cap):
      // re-grant only when half the cap is spent, so the device leg carries one small
      // WINDOW_ADJUST per cap/2 bytes instead of one per 32 KiB packet.
      const granted = entry.ch.incoming.window - amount; // the peer's real credit before this adjust
      const wanted = granted > entry.cap * REGRANT_AT ? 0 : entry.cap - granted;
      entry.ch.incoming.window = granted + wanted;
      if (wanted === 0) return undefined;
      amount = wanted;
    }
    return original.call(this, recipient, amount);
  };
  return registry;
}

/** Cap how much unconsumed data the peer may send on `channel` (an ssh2 channel) while its connection is shared. */
export function capReceiveWindow(channel: Duplex, cap: number = STREAM_WINDOW): void {
  const ch = channel as unknown as ChannelInternals;
  const proto = ch._client?._protocol;
  const adjust = proto?.channelWindowAdjust;
  if (cap <= 0 || !proto || typeof adjust !== 'function' || typeof ch.incoming?.window !== 'number') return;
  const registry = proto[CAPS] ?? installRegistry(proto, adjust);
  const id = ch.outgoing.id;
  const entry: Entry = { ch, cap, inUse: false };
  registry.entries.set(id, entry);
  if (ch._readableState) ch._readableState.highWaterMark = Math.min(ch._readableState.highWaterMark, cap);
  channel.once('close', () => {
    if (registry.entries.get(id) === entry) registry.entries.delete(id);
    if (!entry.inUse) return;
    entry.inUse = false;
    registry.inUse--;
    // The connection just stopped being shared: keep the cap a little longer.
    if (registry.inUse === 1) registry.sharedUntil = Date.now() + SHARED_HOLD_MS;
  });
}

/** `channel` (capped with capReceiveWindow) now carries a stream: it counts toward "shared". */
export function markStreamInUse(channel: Duplex): void {
  const ch = channel as unknown as Partial<ChannelInternals>;
  const registry = ch._client?._protocol?.[CAPS];
  const entry = ch.outgoing && registry?.entries.get(ch.outgoing.id);
  if (!registry || !entry || entry.ch !== ch || entry.inUse) return;
  entry.inUse = true;
  registry.inUse++;
}

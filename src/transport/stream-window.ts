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
 * each other; over a long device link one stream moves at most `cap` per round
 * trip: 128 KiB at 20 ms is 6.4 MB/s), and it only buys anything when another
 * stream is waiting for data from the device. So it holds while the connection is
 * *shared*: at least two streams in use (`markStreamInUse`; pre-opened pool
 * channels do not count) received data from the device in the last
 * `SHARED_HOLD_MS`, counting streams that closed since. An idle keep-alive
 * connection (browsers keep several) does not cap a download; a helper who
 * clicks in a web page, or another download, does, and the cap then holds
 * between clicks. A stream alone gets ssh2's full window; once another becomes
 * active, its credit drains to the cap within one window.
 *
 * How: ssh2 re-grants by adding to `incoming.window` and then calling the
 * protocol's `channelWindowAdjust(id, amount)`. While shared we shrink that amount
 * so the peer's credit never exceeds `cap` (keeping ssh2's accounting equal to
 * what the peer was really granted), and re-grant only once half the cap is spent
 * (one adjust per cap/2 bytes, not one per packet). While shared the channel's
 * readable buffer is also lowered to `cap`, so what we hold for a paused stream
 * stays within its window; alone it keeps ssh2's 2 MiB, which lets the broker
 * absorb a stall on the helper's leg (over a WAN: 56 -> 65 MiB/s, one download).
 * Activity is seen by wrapping the channel's `push()`, which ssh2 calls once per
 * incoming data packet. If ssh2's internals differ from what this expects,
 * nothing is changed.
 */
import type { Duplex } from 'node:stream';

/** Default cap (BROKER_STREAM_WINDOW bytes; 0 keeps ssh2's 2 MiB). */
export const STREAM_WINDOW = Math.max(0, Number(process.env.BROKER_STREAM_WINDOW ?? 128 * 1024) || 0);

/** How long after a stream last received data it still counts as active (and keeps others capped). */
export const SHARED_HOLD_MS = 2000;
/** While not shared, how long a negative answer is reused before the streams are counted again. */
const RECHECK_MS = 50;

interface ChannelInternals {
  incoming: { window: number };
  outgoing: { id: number };
  _client?: { _protocol?: ProtocolInternals };
  _readableState?: { highWaterMark: number };
}

interface Entry {
  ch: ChannelInternals;
  cap: number;
  /** The channel's readable buffer size: ssh2's while not shared, at most `cap` while shared. */
  highWaterMark: { alone: number; shared: number };
  /** When data from the device last arrived on this channel (ms). */
  lastActive: number;
}

/** Per SSH connection: its capped channels, and which of them carry a stream. */
interface Registry {
  entries: Map<number, Entry>;
  /** The entries that carry a stream (`markStreamInUse`), until their channel closes. */
  streams: Set<Entry>;
  /** Latest activity of a stream that has closed since (sequential short streams keep the connection shared). */
  closedActive: number;
  /** Shared at least until then (the second most recent activity + hold). */
  sharedUntil: number;
  /** Not shared until then, unless a quiet stream becomes active. */
  quietUntil: number;
}

interface ProtocolInternals {
  channelWindowAdjust?: (recipient: number, amount: number) => unknown;
  [CAPS]?: Registry;
}

const CAPS = Symbol('windowCaps');
/** Re-grant once the peer's credit falls to this fraction of the cap: one adjust per cap/2 bytes. */
const REGRANT_AT = 0.5;

function isShared(reg: Registry): boolean {
  const now = Date.now();
  if (now < reg.sharedUntil) return true;
  if (now < reg.quietUntil) return false;
  // The two most recent activities among streams in use (and those closed since).
  let first = reg.closedActive;
  let second = 0;
  for (const e of reg.streams) {
    if (e.lastActive > first) [first, second] = [e.lastActive, first];
    else if (e.lastActive > second) second = e.lastActive;
  }
  if (now < second + SHARED_HOLD_MS) {
    reg.sharedUntil = second + SHARED_HOLD_MS;
    return true;
  }
  reg.quietUntil = now + RECHECK_MS;
  return false;
}

/** Data from the device arrived on `entry`'s channel. */
function touch(reg: Registry, entry: Entry): void {
  const now = Date.now();
  if (now >= entry.lastActive + SHARED_HOLD_MS && reg.streams.has(entry)) reg.quietUntil = 0; // a quiet stream woke up: count again
  entry.lastActive = now;
}

/** Give `proto` a registry and route its window adjusts through the cap. */
function installRegistry(proto: ProtocolInternals, original: (recipient: number, amount: number) => unknown): Registry {
  const registry: Registry = { entries: new Map(), streams: new Set(), closedActive: 0, sharedUntil: 0, quietUntil: 0 };
  proto[CAPS] = registry;
  proto.channelWindowAdjust = function capped(this: unknown, recipient: number, amount: number) {
    const entry = registry.entries.get(recipient);
    if (!entry) return original.call(this, recipient, amount);
    const shared = isShared(registry);
    if (entry.ch._readableState) entry.ch._readableState.highWaterMark = shared ? entry.highWaterMark.shared : entry.highWaterMark.alone;
    if (!shared) return original.call(this, recipient, amount);
    // ssh2 calls this on every data packet once below its 1 MiB threshold (always, under a cap):
    // re-grant only when half the cap is spent, so the device leg carries one small
    // WINDOW_ADJUST per cap/2 bytes instead of one per 32 KiB packet.
    const granted = entry.ch.incoming.window - amount; // the peer's real credit before this adjust
    const wanted = granted > entry.cap * REGRANT_AT ? 0 : entry.cap - granted;
    entry.ch.incoming.window = granted + wanted;
    return wanted === 0 ? undefined : original.call(this, recipient, wanted);
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
  const alone = ch._readableState?.highWaterMark ?? 0;
  const entry: Entry = { ch, cap, highWaterMark: { alone, shared: Math.min(cap, alone) }, lastActive: 0 };
  registry.entries.set(id, entry);
  // ssh2 hands each incoming data packet to push(): that is the channel's activity.
  const push = channel.push;
  channel.push = function pushed(this: Duplex, chunk: unknown, encoding?: BufferEncoding) {
    if (chunk !== null) touch(registry, entry);
    return push.call(this, chunk, encoding);
  };
  channel.once('close', () => {
    if (registry.entries.get(id) === entry) registry.entries.delete(id);
    if (!registry.streams.delete(entry)) return;
    registry.closedActive = Math.max(registry.closedActive, entry.lastActive);
  });
}

/** `channel` (capped with capReceiveWindow) now carries a stream: it counts toward "shared". */
export function markStreamInUse(channel: Duplex): void {
  const ch = channel as unknown as Partial<ChannelInternals>;
  const registry = ch._client?._protocol?.[CAPS];
  const entry = ch.outgoing && registry?.entries.get(ch.outgoing.id);
  if (!registry || !entry || entry.ch !== ch || registry.streams.has(entry)) return;
  registry.streams.add(entry);
  if (entry.lastActive > 0) registry.quietUntil = 0;
}

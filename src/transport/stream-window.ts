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
 * trip: 64 KiB at 20 ms is 3.2 MB/s), and it only buys anything when another
 * stream is waiting for data from the device. So it holds while the connection is
 * *shared*: at least two streams in use (`markStreamInUse`; pre-opened pool
 * channels do not count) received data from the device in the last
 * `SHARED_HOLD_MS`, counting streams that closed since. An idle keep-alive
 * connection (browsers keep several) does not cap a download; a helper who
 * clicks in a web page, or another download, does, and the cap then holds
 * between clicks. A stream alone gets ssh2's full window; once another becomes
 * active, its credit drains to the cap within one window.
 *
 * Over a long device link the cap would throttle a stream for no one's benefit:
 * data in flight on the wire delays no other stream, only data queued at the
 * slowest stage does. Two downloads through the emulated WAN (20 ms device leg)
 * moved 9.6 MiB/s together under a fixed 128 KiB cap (the default then), against
 * OpenSSH's 142. So the cap is a queue allowance on top of the link's
 * bandwidth-delay product, as in BBR: `cap + 2 × rate × distance`, where
 * `distance` is the device leg's round trip (the fastest of the last timed opens,
 * `noteRoundTrip`) less `LOCAL_RTT_MS`
 * (below that it is processing, and data held there is queue), and `rate` is the
 * most the stream delivered in one of its last 3 round trips. A stream held by the
 * cap delivers about its cap per round trip, so the cap nearly doubles every round
 * trip until the link's bandwidth, not the cap, limits the stream; from then on the
 * allowance and one bandwidth-delay product wait in queues (OpenSSH: up to the 2 MiB
 * window). On loopback and LANs nothing changes. A device that delays its open
 * confirmations to look far away gains at most ssh2's own window (what a stream alone
 * gets anyway), at the expense of its own session's other streams only.
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
import { ssh2MaxWindow, WINDOW_REGRANT_STEP } from './ssh2-channel';

/**
 * Default cap (BROKER_STREAM_WINDOW bytes; 0 keeps ssh2's 2 MiB): two packets. A/B
 * against 128 KiB, two helpers, B's tiny requests while A downloads: B p50 0.62 →
 * 0.46 and 0.72 → 0.54 ms, A −4 % and −11 %; eight downloads −2 % and −4 %.
 */
export const STREAM_WINDOW = Math.max(0, Number(process.env.BROKER_STREAM_WINDOW ?? 64 * 1024) || 0);

/** How long after a stream last received data it still counts as active (and keeps others capped). */
export const SHARED_HOLD_MS = 2000;
/** While not shared, how long a negative answer is reused before the streams are counted again. */
const RECHECK_MS = 50;
/** Device-leg round trips up to this long are processing, not distance: no allowance for data in flight. */
export const LOCAL_RTT_MS = 1;
/** The device leg's round trip is the fastest of this many recent timed opens. */
const RTT_SAMPLES = 16;
/**
 * The allowance for data in flight is twice what the stream delivered in the last
 * round trip (BBR's gain): with 1, processing time on top of the distance would
 * stall the cap short of the link's bandwidth (two WAN downloads: 32 MiB/s).
 */
const IN_FLIGHT_GAIN = 2;
/**
 * The rate is the best of the last few round trips (BBR's max filter): the window
 * comes back in bursts, so one round trip may catch two and the next none.
 */
const RATE_ROUNDS = 3;
/** A stream quiet for this many round trips starts measuring its rate afresh. */
const RATE_GAP_RTTS = 4;

interface ChannelInternals {
  incoming: { window: number };
  outgoing: { id: number };
  _client?: { _protocol?: ProtocolInternals };
  _readableState?: { highWaterMark: number };
}

interface Entry {
  ch: ChannelInternals;
  /** The queue allowance (`capReceiveWindow`'s cap). */
  base: number;
  /** The cap now: `base`, plus what the stream delivers per round trip over a long link. */
  cap: number;
  /** The channel's readable buffer size while not shared (ssh2's); at most `cap` while shared. */
  aloneHighWaterMark: number;
  /** When data from the device last arrived on this channel (ms). */
  lastActive: number;
  /** The current rate measurement: since when, and how many bytes. */
  since: number;
  bytes: number;
  /** The rates (bytes/ms) of the last RATE_ROUNDS measurements, newest last. */
  rates: number[];
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
  /** Recent open round trips (ms), and the distance they give (`noteRoundTrip`). */
  roundTrips: number[];
  distance: number;
}

interface ProtocolInternals {
  channelWindowAdjust?: (recipient: number, amount: number) => unknown;
  [CAPS]?: Registry;
}

const CAPS = Symbol('windowCaps');
/** Re-grant once the peer's credit falls to this fraction of the cap: one adjust per cap/2 bytes. */
const REGRANT_AT = 0.5;

/** Bytes of a capped window spent before it is re-granted: half the cap, at most the channels' step when one is set. */
function regrantStep(cap: number): number {
  return WINDOW_REGRANT_STEP > 0 ? Math.min(cap * REGRANT_AT, WINDOW_REGRANT_STEP) : cap * REGRANT_AT;
}

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

/** Data (`bytes` of it) from the device arrived on `entry`'s channel. */
function touch(reg: Registry, entry: Entry, bytes: number): void {
  const now = Date.now();
  if (now >= entry.lastActive + SHARED_HOLD_MS && reg.streams.has(entry)) reg.quietUntil = 0; // a quiet stream woke up: count again
  entry.lastActive = now;
  if (reg.distance > 0) measureRate(entry, reg.distance, now, bytes);
}

/** Over a long link, after each round trip: cap = allowance + gain × best recent rate × distance. */
function measureRate(entry: Entry, distance: number, now: number, bytes: number): void {
  const elapsed = now - entry.since;
  if (elapsed > distance * RATE_GAP_RTTS) {
    // quiet since: a new measurement starts with this packet
    entry.since = now;
    entry.bytes = bytes;
    entry.rates.length = 0;
    return;
  }
  entry.bytes += bytes;
  if (elapsed < distance) return;
  entry.rates.push(entry.bytes / elapsed);
  if (entry.rates.length > RATE_ROUNDS) entry.rates.shift();
  // ssh2's window is the most any cap can be.
  entry.cap = Math.min(ssh2MaxWindow(), Math.round(entry.base + IN_FLIGHT_GAIN * Math.max(...entry.rates) * distance));
  entry.since = now;
  entry.bytes = 0;
}

/** Give `proto` a registry and route its window adjusts through the cap. */
function installRegistry(proto: ProtocolInternals, original: (recipient: number, amount: number) => unknown): Registry {
  const registry: Registry = { entries: new Map(), streams: new Set(), closedActive: 0, sharedUntil: 0, quietUntil: 0, roundTrips: [], distance: 0 };
  proto[CAPS] = registry;
  proto.channelWindowAdjust = function capped(this: unknown, recipient: number, amount: number) {
    const entry = registry.entries.get(recipient);
    if (!entry) return original.call(this, recipient, amount);
    const shared = isShared(registry);
    if (entry.ch._readableState) entry.ch._readableState.highWaterMark = shared ? Math.min(entry.cap, entry.aloneHighWaterMark) : entry.aloneHighWaterMark;
    if (!shared) return original.call(this, recipient, amount);
    // ssh2 calls this on every data packet once below its 1 MiB threshold (always, under a cap):
    // re-grant only once half the cap (at most a re-grant step) is spent, so the device leg
    // carries one small WINDOW_ADJUST per cap/2 bytes instead of one per 32 KiB packet.
    const granted = entry.ch.incoming.window - amount; // the peer's real credit before this adjust
    const wanted = granted > entry.cap - regrantStep(entry.cap) ? 0 : entry.cap - granted;
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
  const entry: Entry = { ch, base: cap, cap, aloneHighWaterMark: ch._readableState?.highWaterMark ?? 0, lastActive: 0, since: 0, bytes: 0, rates: [] };
  registry.entries.set(id, entry);
  // ssh2 hands each incoming data packet to push(): that is the channel's activity.
  const push = channel.push;
  channel.push = function pushed(this: Duplex, chunk: unknown, encoding?: BufferEncoding) {
    if (chunk !== null) touch(registry, entry, (chunk as { length?: number }).length ?? 0);
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

/**
 * An open on `conn` (an ssh2 connection) took `ms` from request to answer: the device
 * leg's round trip, plus the device's processing. The fastest of the recent ones, less
 * LOCAL_RTT_MS, is the distance that lets a capped stream's cap grow.
 */
export function noteRoundTrip(conn: object, ms: number): void {
  const proto = (conn as { _protocol?: ProtocolInternals })._protocol;
  const adjust = proto?.channelWindowAdjust;
  if (!proto || typeof adjust !== 'function' || !(ms >= 0)) return;
  const registry = proto[CAPS] ?? installRegistry(proto, adjust);
  registry.roundTrips.push(ms);
  if (registry.roundTrips.length > RTT_SAMPLES) registry.roundTrips.shift();
  registry.distance = Math.max(0, Math.min(...registry.roundTrips) - LOCAL_RTT_MS);
}

/**
 * Receive windows for tunnel streams that keep queues short: a cap while streams share
 * their connection, and a window sized by time (not ssh2's 2 MiB) while one is alone.
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
 * `SHARED_HOLD_MS`, counting streams that closed since, and one of them is light
 * (below BULK_BYTES_PER_MS: it would wait, not fill the queue itself). An idle
 * keep-alive connection (browsers keep several) does not cap a download, nor does
 * another download (bulk streams share the queues at full windows); a helper who
 * clicks in a web page does, and the cap then holds between clicks. Once a light
 * stream becomes active, a bulk stream's credit drains to the cap within one window.
 *
 * That one window must not be ssh2's 2 MiB on a slow link: when the next stream
 * arrives, a download alone has already been granted it, and on a 10 Mbit/s device
 * uplink 2 MiB takes 1.7 s to drain, which the next stream's first reply waits
 * behind (OpenSSH's chain waits so on every request). So a stream alone is held to
 * `cap + 2 × rate × (distance + ALONE_SLACK_MS)`, by time rather than bytes: on
 * loopback that is ssh2's whole window, on a slow link about twice the cap. And a
 * new stream opens with such a window (`openWithStreamWindow`; the cap when the
 * connection has delivered nothing lately), not with 2 MiB that a download would
 * put in the link's queue before its first adjust; from there it grows as TCP's
 * slow start does (STARTUP_GROWTH).
 *
 * The broker applies all this to its device leg (downloads flow device → broker).
 * Helpers apply it to their own leg (broker → helper) only while that leg is long
 * (`WindowScope.longOnly`): there the queue forms when the helper's own link is the
 * slow one, and a browser's clicks wait behind its download. On loopback and LANs
 * the broker, not the helper's leg, is the slowest stage, so a cap there would only
 * cost throughput. Devices (`broker-agent expose`) do the same for uploads, on the
 * channels they accept (broker → device), on every leg: over a slow device downlink one
 * helper's upload would otherwise put 2 MiB in front of every other helper's request,
 * and on loopback the device, which decrypts, is where an upload queues. Helpers and
 * devices time their leg with global requests (`transport/round-trip.ts`).
 *
 * Over a long device link the cap would throttle a stream for no one's benefit:
 * data in flight on the wire delays no other stream, only data queued at the
 * slowest stage does. Two downloads through the emulated WAN (20 ms device leg)
 * moved 9.6 MiB/s together under a fixed 128 KiB cap (the default then), against
 * OpenSSH's 142. So the cap is a queue allowance on top of the link's
 * bandwidth-delay product, as in BBR: `cap + 2 × rate × distance`, where
 * `distance` is the leg's round trip (the fastest of the last timed opens or pings,
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
 * protocol's `channelWindowAdjust(id, amount)`. We shrink that amount so the peer's
 * credit never exceeds the cap (or the window alone; keeping ssh2's accounting
 * equal to what the peer was really granted), and re-grant only once part of it is
 * spent (one adjust per cap/2 bytes, not one per packet). While shared the channel's
 * readable buffer is also lowered to `cap`, so what we hold for a paused stream
 * stays within its window; alone it keeps ssh2's 2 MiB, which lets the broker
 * absorb a stall on the helper's leg (over a WAN: 56 -> 65 MiB/s, one download).
 * Activity is seen by wrapping the channel's `push()`, which ssh2 calls once per
 * incoming data packet. A channel's opening window is set by wrapping the
 * protocol's `forwardedTcpip()` for one call, which records how much less than
 * ssh2's 2 MiB was announced; `capReceiveWindow` takes that off ssh2's view when
 * the open is confirmed. If ssh2's internals differ from what this expects,
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
/**
 * A stream is *bulk* while it delivers at least this many bytes per millisecond of a rate
 * period (RATE_MIN_PERIOD_MS, or the device leg's round trip): 16 KiB per 5 ms, 3.3 MB/s.
 * Only a light stream (a click, a keystroke, a handshake) gains from the cap on the
 * others; streams that are all bulk share the queues at full windows. Eight downloads
 * capped each other for nothing: 489 against 585 MiB/s uncapped (A/B × 3, loopback).
 * On a link slower than this every stream counts as light, and the cap holds as before.
 */
export const BULK_BYTES_PER_MS = (16 * 1024) / 5;
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
/**
 * Rates are measured over one round trip of the device leg, but at least this long
 * (on loopback and LANs the round trip is shorter than the clock's resolution).
 */
export const RATE_MIN_PERIOD_MS = 5;
/**
 * A stream alone may have in flight twice what it delivers in the device leg's round
 * trip plus this long: `cap + 2 × rate × (distance + ALONE_SLACK_MS)`. On loopback
 * (500 KB/ms) that is ssh2's whole window, so a download alone moves as fast as with
 * it; on a 10 Mbit/s uplink (1.25 KB/ms, 20 ms) it is 64 + 56 KiB instead of 2 MiB:
 * what the next stream's first reply queues behind, 0.1 s instead of 1.7 s.
 */
export const ALONE_SLACK_MS = 5;
/**
 * Startup: a stream's window alone (and, over a long link, its cap) grows by what
 * each packet brings, doubling per round trip, because a window sized from measured
 * rates grows only every other round trip (one to measure, one for the grant to
 * take effect). It ends once the rate has not grown by this factor for
 * STARTUP_PLATEAUS rounds in a row (BBR's rule): the link, or the application, now
 * limits the stream, not its window; the windows then follow the measured rate.
 */
const STARTUP_GROWTH = 1.25;
const STARTUP_PLATEAUS = 2;
/**
 * How long a connection remembers the best rate one of its streams delivered: the
 * next stream opens with a window sized to it. With nothing remembered a stream
 * opens with the cap and doubles per round trip in startup, like TCP's slow start:
 * a fresh connection's first 32 MiB download over a 20 ms device leg ran at 61–63
 * instead of 73.5 MiB/s (55–57 growing only with each rate measurement, every
 * other round trip), the ones after it as fast as before.
 */
export const RATE_MEMORY_MS = 60_000;

interface ChannelInternals {
  incoming: { window: number; id?: number };
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
  /** The window while not shared: its opening window, then `base` plus what it delivers (ALONE_SLACK_MS). */
  alone: number;
  /** Windows apply only while the connection's round trip is long (`WindowScope`). */
  longOnly: boolean;
  /** The channel's readable buffer size while not shared (ssh2's); at most `cap` while shared. */
  aloneHighWaterMark: number;
  /** When data from the device last arrived on this channel (ms). */
  lastActive: number;
  /** The current rate measurement: since when, and how many bytes. */
  since: number;
  bytes: number;
  /** The packet the current measurement started at: not part of its rate, but of whether the stream is bulk. */
  startBytes: number;
  /** The rates (bytes/ms) of the last RATE_ROUNDS measurements, newest last. */
  rates: number[];
  /**
   * Starting up: the window alone grows by what each packet brings (doubling per
   * round trip, as TCP's slow start) until the measured rate stops growing.
   */
  startup: boolean;
  /** In startup: the best single-round rate so far, and how many rounds since it grew by STARTUP_GROWTH. */
  startupBest: number;
  plateaus: number;
}

/** Per SSH connection: its capped channels, and which of them carry a stream. */
interface Registry extends RateMemory {
  entries: Map<number, Entry>;
  /** The entries that carry a stream (`markStreamInUse`), until their channel closes. */
  streams: Set<Entry>;
  /** Latest activity of a stream that has closed since (sequential short streams keep the connection shared). */
  closedActive: number;
  /** The same, of a stream that was light when it closed (a helper's short requests on new connections). */
  closedLightActive: number;
  /** Shared until then: at most RECHECK_MS ahead, since a light stream may turn bulk. */
  sharedUntil: number;
  /** Not shared until then, unless a quiet stream becomes active. */
  quietUntil: number;
  /** Recent open round trips (ms), and the distance they give (`noteRoundTrip`). */
  roundTrips: number[];
  distance: number;
  // From RateMemory: the best rate a stream delivered lately, and when; new streams open with a window to match.
  /** The opening window for the next channel we open or accept (`openWithStreamWindow`), 0 when none is armed. */
  armed: number;
  /** By local channel id: how much less than ssh2 believes a channel's opening window was. */
  opening: Map<number, number>;
}

type OpenForwarded = (chan: number, initWindow: number, maxPacket: number, cfg: unknown) => unknown;
type ConfirmOpen = (remote: number, local: number, initWindow: number, maxPacket: number) => unknown;

interface ProtocolInternals {
  channelWindowAdjust?: (recipient: number, amount: number) => unknown;
  forwardedTcpip?: OpenForwarded;
  directTcpip?: OpenForwarded;
  openssh_directStreamLocal?: OpenForwarded;
  channelOpenConfirm?: ConfirmOpen;
  [CAPS]?: Registry;
}

const CAPS = Symbol('windowCaps');
/**
 * Re-grant once this fraction of the cap is spent: one adjust per cap/2 bytes. A
 * stream alone over a long link is re-granted at a quarter: its window is a few
 * 32 KiB packets on a slow link, and re-granted at half it had about one packet in
 * flight when the adjust left, less than the round trip takes to refill, so the
 * link idled now and then (10 Mbit/s, 20 ms: 1.12 against 1.16 MiB/s; a quarter:
 * 1.16). While shared, half: what is in flight is what the other streams wait
 * behind (a quarter there: B's p50 103 against 78 ms).
 */
const REGRANT_AT = 0.5;
const REGRANT_AT_ALONE_LONG = 0.25;

/** Bytes of a capped window spent before it is re-granted, at most the channels' step when one is set. */
function regrantStep(cap: number, fraction: number): number {
  const step = cap * fraction;
  return WINDOW_REGRANT_STEP > 0 ? Math.min(step, WINDOW_REGRANT_STEP) : step;
}

/**
 * Whether `e` moves bulk data now: in its current rate period so far (a full 32 KiB
 * packet is enough), or in its last completed one. A new stream, or one quiet for a
 * while, is light until its packets say otherwise.
 */
function isBulk(reg: Registry, e: Entry): boolean {
  const period = Math.max(reg.distance, RATE_MIN_PERIOD_MS);
  return e.startBytes + e.bytes >= BULK_BYTES_PER_MS * period || (e.rates.at(-1) ?? 0) >= BULK_BYTES_PER_MS;
}

/**
 * Shared: two streams in use (or closed since) were active in the last SHARED_HOLD_MS,
 * and one of the active ones is light. Streams change from light to bulk, so a "shared"
 * answer is reused for RECHECK_MS at most (the count is O(streams)).
 */
function isShared(reg: Registry): boolean {
  const now = Date.now();
  if (now < reg.sharedUntil) return true;
  if (now < reg.quietUntil) return false;
  // The two most recent activities among streams in use (and those closed since), and the latest light one.
  let first = reg.closedActive;
  let second = 0;
  let light = reg.closedLightActive;
  for (const e of reg.streams) {
    if (e.lastActive > first) [first, second] = [e.lastActive, first];
    else if (e.lastActive > second) second = e.lastActive;
    if (e.lastActive > light && !isBulk(reg, e)) light = e.lastActive;
  }
  const until = Math.min(second, light) + SHARED_HOLD_MS;
  if (now < until) {
    reg.sharedUntil = Math.min(until, now + RECHECK_MS);
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
  measureRate(reg, entry, now, bytes);
  if (entry.startup) {
    // Slow start: each packet lets one more in. The cap grows so only over a long link;
    // on loopback and LANs it is the queue allowance alone.
    entry.alone = Math.min(ssh2MaxWindow(), entry.alone + bytes);
    if (reg.distance > 0) entry.cap = Math.min(ssh2MaxWindow(), entry.cap + bytes);
  }
}

/**
 * After each round trip (at least RATE_MIN_PERIOD_MS): cap = allowance + gain × best
 * recent rate × distance, and the same with ALONE_SLACK_MS added to the distance for
 * the window while not shared; in startup neither falls below what the packets grew
 * it to, and startup ends once the rate stops growing.
 */
function measureRate(reg: Registry, entry: Entry, now: number, bytes: number): void {
  const distance = reg.distance;
  const period = Math.max(distance, RATE_MIN_PERIOD_MS);
  const elapsed = now - entry.since;
  if (elapsed > period * RATE_GAP_RTTS) {
    // Quiet since: a new measurement starts at this packet's arrival. Its bytes were on
    // the way before then, so they do not count (counted, a slow link's first rate was
    // two packets per packet interval: twice the link's).
    entry.since = now;
    entry.bytes = 0;
    entry.startBytes = bytes;
    entry.rates.length = 0; // bulk once is not bulk now: a keep-alive connection's next reply is light
    entry.startup = true;
    entry.startupBest = 0;
    entry.plateaus = 0;
    return;
  }
  entry.bytes += bytes;
  if (elapsed < period) return;
  const last = entry.bytes / elapsed;
  const rate = addRound(entry.rates, last);
  const capped = windowFor(entry.base, rate, distance);
  const timed = windowFor(entry.base, rate, distance + ALONE_SLACK_MS);
  if (entry.startup) {
    if (last >= entry.startupBest * STARTUP_GROWTH) {
      entry.startupBest = last;
      entry.plateaus = 0;
    } else if (++entry.plateaus >= STARTUP_PLATEAUS) entry.startup = false;
  }
  entry.cap = entry.startup ? Math.max(entry.cap, capped) : capped;
  entry.alone = entry.startup ? Math.max(entry.alone, timed) : timed;
  rememberRate(reg, rate, now);
  entry.since = now;
  entry.bytes = 0;
  entry.startBytes = 0;
}

/** One round's rate (bytes/ms) joins `rates`, which keeps the last RATE_ROUNDS; returns the best of them. */
export function addRound(rates: number[], rate: number): number {
  rates.push(rate);
  if (rates.length > RATE_ROUNDS) rates.shift();
  return Math.max(...rates);
}

/** The best rate a connection's streams delivered lately (bytes/ms), and when. */
export interface RateMemory {
  rate: number;
  rateAt: number;
}

/** Remember `rate` if it is the best lately, or if what was remembered is older than RATE_MEMORY_MS. */
export function rememberRate(m: RateMemory, rate: number, now: number): void {
  if (rate >= m.rate || now - m.rateAt > RATE_MEMORY_MS) {
    m.rate = rate;
    m.rateAt = now;
  }
}

/** What `m` remembers, if it is at most RATE_MEMORY_MS old; else 0. */
export function recalledRate(m: RateMemory, now: number): number {
  return now - m.rateAt <= RATE_MEMORY_MS ? m.rate : 0;
}

/** `base` plus gain × `rate` × `ms`: the data a window allows for what is in flight over `ms`. */
export function inFlightAllowance(base: number, rate: number, ms: number): number {
  return base + IN_FLIGHT_GAIN * rate * ms;
}

/** inFlightAllowance, at most ssh2's window, the most any window can be. */
function windowFor(base: number, rate: number, ms: number): number {
  return Math.min(ssh2MaxWindow(), Math.round(inFlightAllowance(base, rate, ms)));
}

/** A new stream's window: what the connection's streams delivered lately, or the allowance alone. */
function openingWindow(reg: Registry): number {
  return windowFor(STREAM_WINDOW, recalledRate(reg, Date.now()), reg.distance + ALONE_SLACK_MS);
}

/** Give `proto` a registry and route its window adjusts through the cap. */
function installRegistry(proto: ProtocolInternals, original: (recipient: number, amount: number) => unknown): Registry {
  const registry: Registry = {
    entries: new Map(), streams: new Set(), closedActive: 0, closedLightActive: 0, sharedUntil: 0, quietUntil: 0,
    roundTrips: [], distance: 0, rate: 0, rateAt: 0, armed: 0, opening: new Map(),
  };
  proto[CAPS] = registry;
  proto.channelWindowAdjust = function capped(this: unknown, recipient: number, amount: number) {
    const entry = registry.entries.get(recipient);
    if (!entry || (entry.longOnly && registry.distance <= 0)) return original.call(this, recipient, amount);
    const shared = isShared(registry);
    if (entry.ch._readableState) entry.ch._readableState.highWaterMark = shared ? Math.min(entry.cap, entry.aloneHighWaterMark) : entry.aloneHighWaterMark;
    const cap = shared ? entry.cap : entry.alone;
    if (cap >= ssh2MaxWindow()) return original.call(this, recipient, amount);
    // ssh2 calls this on every data packet once below its 1 MiB threshold (always, under a cap):
    // re-grant only once part of the cap (at most a re-grant step) is spent, so the device leg
    // carries one small WINDOW_ADJUST per cap/2 (alone on a long link, cap/4) bytes instead of one per 32 KiB packet.
    const granted = entry.ch.incoming.window - amount; // the peer's real credit before this adjust
    const step = regrantStep(cap, !shared && registry.distance > 0 ? REGRANT_AT_ALONE_LONG : REGRANT_AT);
    const wanted = granted > cap - step ? 0 : cap - granted;
    entry.ch.incoming.window = granted + wanted;
    return wanted === 0 ? undefined : original.call(this, recipient, wanted);
  };
  /** The window to announce for local channel `chan` instead of ssh2's `initWindow`, noting the difference. */
  const announced = (chan: number, initWindow: number): number => {
    const armed = registry.armed;
    registry.armed = 0;
    if (armed > 0 && armed < initWindow) {
      registry.opening.set(chan, initWindow - armed);
      return armed;
    }
    registry.opening.delete(chan);
    return initWindow;
  };
  // Opens we make: forwarded-tcpip on the broker (to devices), direct-tcpip on helpers
  // (and direct-streamlocal for fast open's channels opened in advance).
  for (const name of ['forwardedTcpip', 'directTcpip', 'openssh_directStreamLocal'] as const) {
    const open = proto[name];
    if (typeof open !== 'function') continue;
    proto[name] = function openArmed(this: unknown, chan: number, initWindow: number, maxPacket: number, cfg: unknown) {
      return open.call(this, chan, announced(chan, initWindow), maxPacket, cfg);
    };
  }
  // Opens we accept: forwarded-tcpip on devices, direct-tcpip from helpers on the broker (uploads).
  const confirm = proto.channelOpenConfirm;
  if (typeof confirm === 'function') {
    proto.channelOpenConfirm = function confirmArmed(this: unknown, remote: number, local: number, initWindow: number, maxPacket: number) {
      return confirm.call(this, remote, local, announced(local, initWindow), maxPacket);
    };
  }
  return registry;
}

function registryOf(conn: object): Registry | undefined {
  const proto = (conn as { _protocol?: ProtocolInternals })._protocol;
  const adjust = proto?.channelWindowAdjust;
  if (!proto || typeof adjust !== 'function') return undefined;
  return proto[CAPS] ?? installRegistry(proto, adjust);
}

/** Where windows apply on a connection. */
export interface WindowScope {
  /**
   * Only while the connection's round trip is above LOCAL_RTT_MS. A helper's leg is
   * never the slowest stage on loopback or a LAN (the broker, which decrypts and
   * re-encrypts, is), so a cap there would cost throughput for nothing; over a long or
   * slow leg what one stream has in flight is what the helper's other streams wait behind.
   */
  longOnly?: boolean;
}

/**
 * Run `open`, which must open a channel on `conn` at once (ssh2's `forwardOut`) or accept
 * one (the `accept()` of a 'tcp connection' event), so that the channel starts with a
 * window sized to what the connection's streams deliver (the cap when nothing is known)
 * instead of ssh2's 2 MiB, which a download alone would put in the queue of a slow link
 * before its first window adjust. Pass the channel to `capReceiveWindow` once it is open
 * (in the open's callback; right after `accept()`), before anything else reads it: ssh2
 * still believes it granted 2 MiB until then.
 */
export function openWithStreamWindow<T>(conn: object, open: () => T, opts: WindowScope = {}): T {
  const registry = STREAM_WINDOW > 0 ? registryOf(conn) : undefined;
  if (registry && !(opts.longOnly && registry.distance <= 0)) registry.armed = openingWindow(registry);
  try {
    return open();
  } finally {
    if (registry) registry.armed = 0;
  }
}

/**
 * Accept a channel the peer opened on `conn` (`accept`, from ssh2's event) with a window
 * sized for that leg: armed opening window, capped, counted as a stream. Undefined when
 * `accept` gives nothing (the connection went away).
 */
export function acceptWithStreamWindow<T extends Duplex>(conn: object, accept: () => T | undefined, scope: WindowScope = {}): T | undefined {
  const channel = openWithStreamWindow(conn, accept, scope);
  if (!channel) return undefined;
  capReceiveWindow(channel, STREAM_WINDOW, scope);
  markStreamInUse(channel);
  return channel;
}

/** Cap how much unconsumed data the peer may send on `channel` (an ssh2 channel) while its connection is shared. */
export function capReceiveWindow(channel: Duplex, cap: number = STREAM_WINDOW, scope: WindowScope = {}): void {
  const ch = channel as unknown as ChannelInternals;
  const proto = ch._client?._protocol;
  const adjust = proto?.channelWindowAdjust;
  if (cap <= 0 || !proto || typeof adjust !== 'function' || typeof ch.incoming?.window !== 'number') return;
  const registry = proto[CAPS] ?? installRegistry(proto, adjust);
  const id = ch.outgoing.id;
  // Opened with less than ssh2 believes (openWithStreamWindow): make its view the peer's.
  const localId = ch.incoming.id;
  const less = localId === undefined ? undefined : registry.opening.get(localId);
  if (less !== undefined) {
    registry.opening.delete(localId!);
    ch.incoming.window -= less;
  }
  const entry: Entry = {
    ch, base: cap, cap, alone: Math.max(cap, ch.incoming.window), longOnly: scope.longOnly === true,
    aloneHighWaterMark: ch._readableState?.highWaterMark ?? 0, lastActive: 0, since: 0, bytes: 0, startBytes: 0, rates: [],
    startup: true, startupBest: 0, plateaus: 0,
  };
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
    if (entry.lastActive > registry.closedLightActive && !isBulk(registry, entry)) {
      registry.closedLightActive = entry.lastActive;
      registry.quietUntil = 0; // a light stream was just active: count again
    }
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
 * Whether a light stream other than `channel` (capped with capReceiveWindow) received data
 * on its connection in the last SHARED_HOLD_MS, counting light streams closed since: what
 * a sender-side limit (`transport/send-window.ts`) holds an upload back for. O(streams).
 */
export function lightStreamBesides(channel: Duplex): boolean {
  const ch = channel as unknown as Partial<ChannelInternals>;
  const registry = ch._client?._protocol?.[CAPS];
  if (!registry) return false;
  const self = ch.outgoing && registry.entries.get(ch.outgoing.id);
  const now = Date.now();
  if (now < registry.closedLightActive + SHARED_HOLD_MS) return true;
  for (const e of registry.streams) {
    if (e !== self && now < e.lastActive + SHARED_HOLD_MS && !isBulk(registry, e)) return true;
  }
  return false;
}

/**
 * The device leg's distance as `channel`'s connection measured it (`noteRoundTrip`): its
 * fastest recent round trip less LOCAL_RTT_MS; 0 on loopback and LANs, or when unknown.
 */
export function legDistance(channel: Duplex): number {
  const ch = channel as unknown as Partial<ChannelInternals>;
  return ch._client?._protocol?.[CAPS]?.distance ?? 0;
}

/**
 * An open on `conn` (an ssh2 connection) took `ms` from request to answer: the device
 * leg's round trip, plus the device's processing. The fastest of the recent ones, less
 * LOCAL_RTT_MS, is the distance that lets a capped stream's cap grow.
 */
export function noteRoundTrip(conn: object, ms: number): void {
  const registry = ms >= 0 ? registryOf(conn) : undefined;
  if (!registry) return;
  registry.roundTrips.push(ms);
  if (registry.roundTrips.length > RTT_SAMPLES) registry.roundTrips.shift();
  registry.distance = Math.max(0, Math.min(...registry.roundTrips) - LOCAL_RTT_MS);
}

/**
 * A sender-side limit for uploads to devices that do not size their own windows.
 *
 * Our agents hold a helper's upload to a small window while another stream on their
 * connection is light (`stream-window.ts`), so a click does not wait behind 2 MiB of
 * someone's upload in a slow device downlink's queue. A stock `ssh -R` device grants
 * OpenSSH's 2 MiB to every stream, always. So the broker, which sends those uploads,
 * holds back part of the credit instead: while a light stream other than this one is
 * active, it lets at most `limit` bytes be sent that the device has not yet credited
 * back, as if the device had granted `limit` instead of its window.
 *
 * Over a long device link (a round trip above LOCAL_RTT_MS) a stream alone is held too,
 * by time as our agents hold their windows: to the cap plus the step plus twice what the
 * device credits back per round trip plus ALONE_SLACK_MS. Otherwise an upload alone puts
 * the whole 2 MiB in a slow link's queue, and the first request of the next stream waits
 * behind it (10 Mbit/s: 1.7 s). On loopback and LANs a stream alone is never held. While
 * a light stream is active the limit gets the same allowance for data in flight, without
 * the slack: on a long fast link the cap and step alone would throttle the upload to
 * them per round trip.
 *
 * The limit must stay above the device's own re-grant step, or the device would wait
 * for more data before it credits anything and the stream would stall: OpenSSH
 * re-grants what it has consumed once 3 packets (96 KiB) are unacknowledged, ssh2 once
 * 1 MiB is. So the step is learned: nothing is held back until the device has sent a
 * window adjust on this connection, and the limit is the cap plus the largest adjust
 * seen, which is at least the step (OpenSSH over loopback: adjusts of 110–290 KiB, so
 * about 350 KiB instead of 2 MiB; ssh2: more than its window, so no limit). Should a
 * held-back stream still wait STALL_MS for credit, its credit is released and it is
 * never held back again.
 *
 * How: ssh2 adds a CHANNEL_WINDOW_ADJUST's amount to the channel's `outgoing.window`
 * (what it may send) in the connection's handler, and resumes a write that waited for
 * it. The handler is wrapped per connection; for a limited channel it passes on only
 * the part of the credit the limit allows and keeps the rest hidden, to pass on later.
 * ssh2's view plus what is hidden is always the device's real credit. If ssh2's
 * internals differ from what this expects, nothing is held back.
 */
import type { Duplex } from 'node:stream';
import {
  addRound, ALONE_SLACK_MS, inFlightAllowance, legDistance, lightStreamBesides, RATE_MIN_PERIOD_MS, recalledRate, rememberRate, STREAM_WINDOW,
  type RateMemory,
} from './stream-window';

/** A held-back stream that has had no credit for this long gets all of it. */
export const STALL_MS = 1000;
/** How long an answer of `lightStreamBesides` is reused for one channel. */
const LIGHT_CHECK_MS = 50;
/**
 * Credits further apart than this do not measure the device's pace (the stream was
 * idle, or the link is slower than a re-grant step per second): the measurement starts
 * afresh, and the rate known so far stays.
 */
const CREDIT_GAP_MS = 1000;

type AdjustHandler = (p: unknown, recipient: number, amount: number) => unknown;

interface ChannelInternals {
  outgoing: { window: number };
  incoming: { id: number };
  _client?: { _protocol?: ProtocolInternals };
}

interface ProtocolInternals {
  _handlers?: Record<string, unknown>;
  [SENDERS]?: Senders;
}

interface Sender {
  channel: Duplex & ChannelInternals;
  /** The device's credit when the limit was put on: its window, less what was sent before. */
  base: number;
  /** Credit the device granted that ssh2 has not been told of yet. */
  hidden: number;
  lastAdjust: number;
  /** Never held back again (it stalled once). */
  released: boolean;
  light: boolean;
  lightCheckedAt: number;
  /** The device's pace: the current measurement period's start and credits, the last RATE_ROUNDS rates (bytes/ms). */
  periodStart: number;
  periodBytes: number;
  rates: number[];
}

/** Per connection: its limited channels by local id, and the device's largest adjust. */
interface Senders extends RateMemory {
  byId: Map<number, Sender>;
  step: number;
  original: AdjustHandler;
  /** ssh2's first argument to the handler (its protocol), kept for releases; the protocol until one arrives. */
  proto: unknown;
  timer: NodeJS.Timeout | undefined;
  // From RateMemory: the best recent rate of a stream on this connection, for streams that have measured none yet.
}

const SENDERS = Symbol('sendLimits');

/**
 * How much of `s`'s credit to hide now: its base less the limit, while a light stream
 * besides it is active, or over a long link.
 */
function holdBack(senders: Senders, s: Sender, now: number): number {
  if (s.released || senders.step === 0 || STREAM_WINDOW + senders.step >= s.base) return 0;
  if (now - s.lightCheckedAt >= LIGHT_CHECK_MS) {
    s.light = lightStreamBesides(s.channel);
    s.lightCheckedAt = now;
  }
  const distance = legDistance(s.channel);
  if (!s.light && distance <= 0) return 0;
  const rate = s.rates.length > 0 ? Math.max(...s.rates) : recalledRate(senders, now);
  const limit = Math.floor(inFlightAllowance(STREAM_WINDOW + senders.step, rate, distance + (s.light ? 0 : ALONE_SLACK_MS)));
  return limit >= s.base ? 0 : s.base - limit;
}

/** The device credited `amount` on `s`: measure its pace over periods of at least the leg's round trip. */
function measureCredit(senders: Senders, s: Sender, now: number, amount: number): void {
  const elapsed = now - s.periodStart;
  if (elapsed > CREDIT_GAP_MS) {
    s.periodStart = now;
    s.periodBytes = 0;
    return;
  }
  s.periodBytes += amount;
  if (elapsed < Math.max(legDistance(s.channel), RATE_MIN_PERIOD_MS)) return;
  rememberRate(senders, addRound(s.rates, s.periodBytes / elapsed), now);
  s.periodStart = now;
  s.periodBytes = 0;
}

/** Release what `s` holds back: ssh2 resumes a write that waited for credit. */
function release(senders: Senders, id: number, s: Sender): void {
  const hidden = s.hidden;
  s.hidden = 0;
  if (hidden > 0) senders.original(senders.proto, id, hidden);
}

/** While something is held back: release streams that have waited STALL_MS for credit. */
function watchStalls(senders: Senders): void {
  if (senders.timer) return;
  senders.timer = setInterval(() => {
    const now = Date.now();
    let holding = false;
    for (const [id, s] of senders.byId) {
      if (s.hidden <= 0) continue;
      if (s.channel.outgoing.window <= 0 && now - s.lastAdjust >= STALL_MS) {
        s.released = true;
        release(senders, id, s);
      } else holding = true;
    }
    if (!holding) {
      clearInterval(senders.timer);
      senders.timer = undefined;
    }
  }, STALL_MS / 4);
  senders.timer.unref();
}

function sendersOf(proto: ProtocolInternals): Senders | undefined {
  if (proto[SENDERS]) return proto[SENDERS];
  const handlers = proto._handlers;
  const original = handlers?.CHANNEL_WINDOW_ADJUST;
  if (!handlers || typeof original !== 'function') return undefined;
  const senders: Senders = { byId: new Map(), step: 0, original: original as AdjustHandler, proto, timer: undefined, rate: 0, rateAt: 0 };
  proto[SENDERS] = senders;
  handlers.CHANNEL_WINDOW_ADJUST = function limited(p: unknown, recipient: number, amount: number) {
    senders.proto = p;
    if (amount > senders.step) senders.step = amount;
    const s = senders.byId.get(recipient);
    if (!s) return senders.original(p, recipient, amount);
    const now = Date.now();
    s.lastAdjust = now;
    measureCredit(senders, s, now, amount);
    const real = s.channel.outgoing.window + s.hidden + amount;
    const hidden = Math.max(0, Math.min(real, holdBack(senders, s, now)));
    const told = amount + s.hidden - hidden;
    s.hidden = hidden;
    if (hidden > 0) watchStalls(senders);
    if (told > 0) return senders.original(p, recipient, told);
    s.channel.outgoing.window += told; // hides credit ssh2 already had: it stays >= 0 (hidden <= real)
    return undefined;
  };
  return senders;
}

/**
 * Hold back what the broker sends on `channel` (an ssh2 channel to a device that does
 * not size its own windows) while another stream on its connection is light, or over a
 * long device link.
 */
export function limitSendWindow(channel: Duplex): void {
  const ch = channel as unknown as Partial<ChannelInternals>;
  const proto = ch._client?._protocol;
  if (STREAM_WINDOW <= 0 || !proto || typeof ch.outgoing?.window !== 'number' || typeof ch.incoming?.id !== 'number') return;
  const senders = sendersOf(proto);
  if (!senders) return;
  const id = ch.incoming.id;
  const s: Sender = {
    channel: channel as Duplex & ChannelInternals, base: ch.outgoing.window, hidden: 0, lastAdjust: Date.now(),
    released: false, light: false, lightCheckedAt: 0, periodStart: Date.now(), periodBytes: 0, rates: [],
  };
  senders.byId.set(id, s);
  // A light stream is active already, or the link is long: hold back from the start, once the step is known.
  const hidden = Math.min(s.base, holdBack(senders, s, Date.now()));
  if (hidden > 0) {
    s.hidden = hidden;
    s.channel.outgoing.window -= hidden;
    watchStalls(senders);
  }
  channel.once('close', () => {
    if (senders.byId.get(id) === s) senders.byId.delete(id);
  });
}

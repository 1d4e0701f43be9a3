/**
 * The broker's sender-side limit for uploads to stock `ssh -R` devices: replayed
 * against just enough of ssh2's channel bookkeeping, and a device that re-grants as
 * OpenSSH does (once more than 3 packets are unacknowledged, all it has consumed).
 */
import { Duplex } from 'node:stream';
import { limitSendWindow, STALL_MS } from '../../src/transport/send-window';
import { ALONE_SLACK_MS, capReceiveWindow, markStreamInUse, noteRoundTrip, SHARED_HOLD_MS } from '../../src/transport/stream-window';

const WINDOW = 2 * 1024 * 1024;
const PACKET = 32 * 1024;
const CAP = 64 * 1024;

type Chan = Duplex & { outgoing: { id: number; window: number }; incoming: { id: number; window: number }; _client: { _protocol: Proto } };
interface Proto {
  channelWindowAdjust: (id: number, amount: number) => void;
  _handlers: { CHANNEL_WINDOW_ADJUST: (p: unknown, recipient: number, amount: number) => void };
}

/** A connection (ssh2's protocol as the broker's server sees it) and channels on it. */
function connection() {
  const byLocal = new Map<number, Chan>();
  const resumed: number[] = [];
  const proto: Proto = {
    channelWindowAdjust: () => {},
    _handlers: {
      // ssh2's server handler: add the credit, resume a write that waited for it.
      CHANNEL_WINDOW_ADJUST: (_p, recipient, amount) => {
        const ch = byLocal.get(recipient);
        if (!ch) return;
        ch.outgoing.window += amount;
        resumed.push(recipient);
      },
    },
  };
  const channel = (id: number): Chan => {
    const ch = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } }) as Chan;
    ch.outgoing = { id: 100 + id, window: WINDOW };
    ch.incoming = { id, window: WINDOW };
    ch._client = { _protocol: proto };
    ch.resume();
    byLocal.set(id, ch);
    capReceiveWindow(ch, CAP);
    markStreamInUse(ch);
    return ch;
  };
  return { proto, channel, resumed };
}

/**
 * A device like OpenSSH's `ssh -R` on `ch`: the broker sends what ssh2 lets it (its
 * `outgoing.window`), in packets; the device consumes all at once and, once more than
 * `step` is unacknowledged, credits it back. Returns the most ever unacknowledged, and
 * the most credit ssh2 ever saw (what the broker could have sent without waiting).
 */
function upload(proto: Proto, ch: Chan, packets: number, step = 3 * PACKET) {
  const d = { unacked: 0, pending: 0, maxUnacked: 0, sent: 0, maxCredit: ch.outgoing.window };
  for (let i = 0; i < packets; i++) {
    const n = Math.min(PACKET, ch.outgoing.window);
    if (n <= 0) break; // ssh2 waits for credit
    ch.outgoing.window -= n;
    d.sent += n;
    d.unacked += n;
    d.pending += n;
    d.maxUnacked = Math.max(d.maxUnacked, d.unacked);
    if (d.pending > step) {
      const amount = d.pending;
      d.pending = 0;
      d.unacked -= amount;
      proto._handlers.CHANNEL_WINDOW_ADJUST(proto, ch.incoming.id, amount);
      d.maxCredit = Math.max(d.maxCredit, ch.outgoing.window);
    }
  }
  return d;
}

/** At fake time `now`: stream `a` held back by the broker, and `b` just answered (a light stream is active). */
function uploadBesideLight(now: number) {
  jest.useFakeTimers({ now });
  const conn = connection();
  const a = conn.channel(1);
  const b = conn.channel(2);
  limitSendWindow(a);
  b.push(Buffer.from('x'));
  return { ...conn, a, b };
}

afterEach(() => jest.useRealTimers());

test('while a light stream is active, at most the cap plus the device\'s re-grant step goes unacknowledged', () => {
  const { proto, a } = uploadBesideLight(1_000_000); // helper B's reply: a light stream is active
  // Until the device has re-granted once, its step is unknown: nothing is held back.
  const first = upload(proto, a, 8);
  expect(first.maxCredit).toBe(WINDOW);
  // From then on: the cap plus its largest adjust (4 packets).
  const d = upload(proto, a, 400);
  const limit = CAP + 4 * PACKET;
  expect(d.maxCredit).toBeLessThanOrEqual(limit);
  expect(d.maxUnacked).toBeLessThanOrEqual(limit);
  expect(d.sent).toBeGreaterThan(100 * PACKET); // and it keeps moving

  // B quiet for the hold: the next adjust passes on all that was held back.
  jest.setSystemTime(1_000_000 + SHARED_HOLD_MS + 100);
  const after = upload(proto, a, 400);
  expect(after.maxCredit).toBeGreaterThan(WINDOW / 2);
});

test('a new stream is held back from the start when a light stream is active and the step is known', () => {
  jest.useFakeTimers({ now: 2_000_000 });
  const { proto, channel } = connection();
  const warm = channel(1);
  limitSendWindow(warm);
  upload(proto, warm, 8); // the device has re-granted once (4 packets)
  const b = channel(2);
  b.push(Buffer.from('x'));
  const a = channel(3);
  limitSendWindow(a);
  expect(a.outgoing.window).toBe(CAP + 4 * PACKET);
  expect(upload(proto, a, 400).maxCredit).toBeLessThanOrEqual(CAP + 4 * PACKET);
});

/**
 * An upload alone through a link that delivers `perMs` bytes a millisecond, for `ms`
 * (fake time): the broker sends whatever ssh2 lets it; the device consumes at the link's
 * pace and credits back as OpenSSH does. Returns the largest queue in the link over the
 * second half (what the next stream's first request would wait behind) and the bytes sent.
 */
function linkUpload(proto: Proto, ch: Chan, perMs: number, ms: number, step = 3 * PACKET) {
  let queue = 0;
  let pending = 0;
  let maxQueue = 0;
  let sent = 0;
  for (let t = 0; t < ms; t++) {
    jest.advanceTimersByTime(1);
    while (ch.outgoing.window > 0) {
      const n = Math.min(PACKET, ch.outgoing.window);
      ch.outgoing.window -= n;
      queue += n;
      sent += n;
    }
    const c = Math.min(queue, perMs);
    queue -= c;
    pending += c;
    if (pending > step) {
      proto._handlers.CHANNEL_WINDOW_ADJUST(proto, ch.incoming.id, pending);
      pending = 0;
    }
    if (t >= ms / 2) maxQueue = Math.max(maxQueue, queue);
  }
  return { maxQueue, sent };
}

describe('a stream alone', () => {
  const PER_MS = 1250; // 10 Mbit/s
  const DISTANCE = 20;

  test('over a long link: held by time to cap + step + 2 x pace x (distance + slack), and the link stays full', () => {
    jest.useFakeTimers({ now: 5_000_000 });
    const { proto, channel } = connection();
    noteRoundTrip({ _protocol: proto }, DISTANCE + 1);
    const a = channel(1);
    limitSendWindow(a);
    const d = linkUpload(proto, a, PER_MS, 4000);
    const step = 3 * PACKET + PER_MS; // OpenSSH credits once more than 3 packets wait: the first adjust is a bit over
    const limit = CAP + step + 2 * PER_MS * (DISTANCE + ALONE_SLACK_MS);
    expect(d.maxQueue).toBeLessThanOrEqual(limit + PACKET);
    expect(d.sent).toBeGreaterThan(0.95 * PER_MS * 4000);

    // The same without the limit: the whole window waits in the link (1.7 s at 10 Mbit/s).
    const other = connection();
    noteRoundTrip({ _protocol: other.proto }, DISTANCE + 1);
    const free = linkUpload(other.proto, other.channel(1), PER_MS, 4000);
    expect(free.maxQueue).toBeGreaterThan(WINDOW - 4 * PACKET);
  });

  test('on loopback and LANs: never held back', () => {
    jest.useFakeTimers({ now: 6_000_000 });
    const { proto, channel } = connection();
    noteRoundTrip({ _protocol: proto }, 0.5);
    const a = channel(1);
    limitSendWindow(a);
    upload(proto, a, 8);
    expect(upload(proto, a, 400).maxCredit).toBeGreaterThan(WINDOW / 2);
  });
});

test('a device that re-grants only after 1 MiB (ssh2\'s rule) is not held back: a limit below that step would stall', () => {
  const { proto, a } = uploadBesideLight(3_000_000);
  const d = upload(proto, a, 400, WINDOW / 2);
  expect(d.sent).toBe(400 * PACKET);
  expect(d.maxCredit).toBeGreaterThan(WINDOW / 2);
});

test('a stream held back that gets no credit for STALL_MS gets all of it, and is not held back again', () => {
  const { proto, resumed, a, b } = uploadBesideLight(4_000_000);
  upload(proto, a, 400); // held back: blocked at the limit
  // The device stops crediting (its target stopped reading, or its rule changed).
  const blocked = upload(proto, a, 400, Infinity);
  expect(blocked.sent).toBeLessThanOrEqual(CAP + 4 * PACKET);
  expect(a.outgoing.window).toBe(0);
  resumed.length = 0;
  jest.advanceTimersByTime(STALL_MS + STALL_MS / 2);
  expect(resumed).toEqual([1]); // ssh2's handler ran: a write that waited resumes
  expect(a.outgoing.window).toBeGreaterThan(WINDOW / 2);
  b.push(Buffer.from('x'));
  expect(upload(proto, a, 400).maxCredit).toBeGreaterThan(WINDOW / 2); // never held back again
});

test('objects without ssh2\'s internals, and the limit off (BROKER_STREAM_WINDOW=0), are left alone', () => {
  const d = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  expect(() => limitSendWindow(d)).not.toThrow();
  let mod: typeof import('../../src/transport/send-window') | undefined;
  const saved = process.env.BROKER_STREAM_WINDOW;
  process.env.BROKER_STREAM_WINDOW = '0';
  try {
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      mod = require('../../src/transport/send-window') as typeof import('../../src/transport/send-window');
    });
  } finally {
    if (saved === undefined) delete process.env.BROKER_STREAM_WINDOW;
    else process.env.BROKER_STREAM_WINDOW = saved;
  }
  const { proto, channel } = connection();
  const a = channel(1);
  const b = channel(2);
  const handler = proto._handlers.CHANNEL_WINDOW_ADJUST;
  mod!.limitSendWindow(a);
  expect(proto._handlers.CHANNEL_WINDOW_ADJUST).toBe(handler);
  b.push(Buffer.from('x'));
  upload(proto, a, 8);
  expect(upload(proto, a, 400).maxCredit).toBeGreaterThan(WINDOW / 2);
});

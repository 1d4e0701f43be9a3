import { Duplex } from 'node:stream';
import { capReceiveWindow, markStreamInUse, SHARED_HOLD_MS } from '../../src/transport/stream-window';

const MAX_WINDOW = 2 * 1024 * 1024;
const BYTE = Buffer.from('x');
const PACKET = 32 * 1024;

type Proto = { channelWindowAdjust: (id: number, amt: number) => void };

/** Just enough of an ssh2 channel and protocol to replay ssh2's window bookkeeping. */
function fakeChannel(id: number, proto: Proto) {
  const ch = new Duplex({ highWaterMark: MAX_WINDOW, read() {}, write(_c, _e, cb) { cb(); } }) as Duplex & {
    incoming: { window: number };
    outgoing: { id: number };
    _client: { _protocol: Proto };
  };
  ch.incoming = { window: MAX_WINDOW };
  ch.outgoing = { id };
  ch._client = { _protocol: proto };
  ch.resume(); // what the tests push is dropped
  return ch;
}

/** ssh2's own windowAdjust(): refill to MAX_WINDOW, then tell the peer. */
function ssh2WindowAdjust(ch: ReturnType<typeof fakeChannel>) {
  const amt = MAX_WINDOW - ch.incoming.window;
  if (amt <= 0) return;
  ch.incoming.window += amt;
  ch._client._protocol.channelWindowAdjust(ch.outgoing.id, amt);
}

/** A peer that believes it has `credit`, sending full packets while it may; returns the adjusts it got. */
function peer(ch: ReturnType<typeof fakeChannel>, sent: Array<[number, number]>) {
  const p = {
    credit: MAX_WINDOW,
    adjusts: [] as number[],
    maxCredit: 0,
    send(packets: number) {
      for (let i = 0; i < packets; i++) {
        expect(p.credit).toBeGreaterThanOrEqual(PACKET); // the peer can always send a full packet
        p.credit -= PACKET;
        ch.incoming.window -= PACKET;
        ch.push(BYTE); // ssh2 pushes each data packet: the stream is active
        if (ch.incoming.window <= MAX_WINDOW / 2) ssh2WindowAdjust(ch);
        for (const [id, amt] of sent.splice(0)) {
          if (id !== ch.outgoing.id) continue;
          p.credit += amt;
          p.adjusts.push(amt);
        }
        // ssh2's view always equals what the peer was really granted (no dropped data).
        expect(ch.incoming.window).toBe(p.credit);
        p.maxCredit = Math.max(p.maxCredit, p.credit);
      }
    },
  };
  return p;
}

function setup() {
  const sent: Array<[number, number]> = [];
  const proto = { channelWindowAdjust: (id: number, amt: number) => { sent.push([id, amt]); } };
  return { sent, proto };
}

/** Two capped channels on one protocol, both carrying a stream, and `b` just received data: the connection is shared. */
function twoStreamsInUse(cap: number, ids: [number, number] = [1, 2]) {
  const { sent, proto } = setup();
  const a = fakeChannel(ids[0], proto);
  const b = fakeChannel(ids[1], proto);
  capReceiveWindow(a, cap);
  capReceiveWindow(b, cap);
  markStreamInUse(a);
  markStreamInUse(b);
  b.push(BYTE);
  return { sent, proto, a, b };
}

afterEach(() => jest.useRealTimers());

test('a stream alone on its connection keeps ssh2\'s full window', () => {
  const { sent, proto } = setup();
  const a = fakeChannel(1, proto);
  const pooled = fakeChannel(2, proto); // pre-opened, not carrying a stream: does not count
  capReceiveWindow(a, 128 * 1024);
  capReceiveWindow(pooled, 128 * 1024);
  markStreamInUse(a);
  const pa = peer(a, sent);
  pa.send(300);
  expect(pa.adjusts.every((x) => x >= MAX_WINDOW / 2)).toBe(true);
});

test('while two streams are in use, neither is granted more than the cap, one adjust per half cap', () => {
  const cap = 128 * 1024;
  const { sent, proto, a, b } = twoStreamsInUse(cap, [7, 9]);
  const plain = fakeChannel(8, proto);
  markStreamInUse(b); // idempotent
  const pa = peer(a, sent);
  pa.send(70); // the opening 2 MiB is spent once
  pa.maxCredit = 0;
  const before = pa.adjusts.length;
  pa.send(2000);
  expect(pa.maxCredit).toBeLessThanOrEqual(cap);
  const steady = pa.adjusts.slice(before);
  expect(steady.every((x) => x >= cap / 2)).toBe(true);
  expect(steady.length).toBeLessThanOrEqual(Math.ceil((2000 * PACKET) / (cap / 2)) + 1);

  // An uncapped channel on the same protocol still gets ssh2's full refill.
  plain.incoming.window = 100;
  ssh2WindowAdjust(plain);
  expect(sent).toEqual([[8, MAX_WINDOW - 100]]);
});

test('the cap holds for a while after the other stream closed, then the survivor gets full windows again', () => {
  jest.useFakeTimers({ now: 1_000_000 });
  const cap = 64 * 1024;
  const { sent, a, b } = twoStreamsInUse(cap);
  const pa = peer(a, sent);
  pa.send(100);
  b.destroy();
  b.emit('close');
  jest.setSystemTime(1_000_000 + SHARED_HOLD_MS / 2);
  pa.maxCredit = 0;
  pa.send(200);
  expect(pa.maxCredit).toBeLessThanOrEqual(cap); // still held
  jest.setSystemTime(1_000_000 + SHARED_HOLD_MS + 1);
  pa.send(200);
  expect(pa.maxCredit).toBeGreaterThan(MAX_WINDOW / 2); // alone again: full window
});

test('an idle stream does not cap a download; once it receives data it does, until it has been quiet for the hold', () => {
  jest.useFakeTimers({ now: 2_000_000 });
  const cap = 128 * 1024;
  const { sent, proto } = setup();
  const a = fakeChannel(1, proto);
  const idle = fakeChannel(2, proto); // a browser's keep-alive connection: open, no traffic
  capReceiveWindow(a, cap);
  capReceiveWindow(idle, cap);
  markStreamInUse(a);
  markStreamInUse(idle);
  const pa = peer(a, sent);
  pa.send(300);
  expect(pa.maxCredit).toBeGreaterThan(MAX_WINDOW / 2); // full windows: nobody else is waiting
  expect(a.readableHighWaterMark).toBe(MAX_WINDOW); // and ssh2's buffer, to absorb a stall on the helper's leg

  jest.setSystemTime(2_000_000 + 5_000);
  idle.push(BYTE); // the helper clicked: a response arrives on the other stream
  pa.send(70); // what was granted before drains
  pa.maxCredit = 0;
  pa.send(300);
  expect(pa.maxCredit).toBeLessThanOrEqual(cap);
  expect(a.readableHighWaterMark).toBe(cap); // what we hold for a paused stream stays within its window

  jest.setSystemTime(2_000_000 + 5_000 + SHARED_HOLD_MS / 2);
  pa.maxCredit = 0;
  pa.send(100);
  expect(pa.maxCredit).toBeLessThanOrEqual(cap); // between clicks: still capped

  jest.setSystemTime(2_000_000 + 5_000 + SHARED_HOLD_MS + 100);
  pa.send(100);
  expect(pa.maxCredit).toBeGreaterThan(MAX_WINDOW / 2); // quiet again: full windows
  expect(a.readableHighWaterMark).toBe(MAX_WINDOW);
});

test('does nothing to objects that are not ssh2 channels', () => {
  const d = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  expect(() => capReceiveWindow(d, 1024)).not.toThrow();
  expect(() => markStreamInUse(d)).not.toThrow();
});

import { Duplex } from 'node:stream';
import { capReceiveWindow } from '../../src/transport/stream-window';

const MAX_WINDOW = 2 * 1024 * 1024;

/** Just enough of an ssh2 channel and protocol to replay ssh2's window bookkeeping. */
function fakeChannel(id: number, proto: { channelWindowAdjust: (id: number, amt: number) => void }) {
  const ch = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } }) as Duplex & {
    incoming: { window: number };
    outgoing: { id: number };
    _client: { _protocol: typeof proto };
  };
  ch.incoming = { window: MAX_WINDOW };
  ch.outgoing = { id };
  ch._client = { _protocol: proto };
  return ch;
}

/** ssh2's own windowAdjust(): refill to MAX_WINDOW, then tell the peer. */
function ssh2WindowAdjust(ch: ReturnType<typeof fakeChannel>) {
  const amt = MAX_WINDOW - ch.incoming.window;
  if (amt <= 0) return;
  ch.incoming.window += amt;
  ch._client._protocol.channelWindowAdjust(ch.outgoing.id, amt);
}

test('after the opening 2 MiB, a capped channel is never granted more than the cap', () => {
  const sent: Array<[number, number]> = [];
  const proto = { channelWindowAdjust: (id: number, amt: number) => { sent.push([id, amt]); } };
  const capped = fakeChannel(7, proto);
  const plain = fakeChannel(8, proto);
  capReceiveWindow(capped, 128 * 1024);

  // The peer (who believes it has `credit`) sends 32 KiB packets; ssh2 adjusts below 1 MiB.
  let credit = MAX_WINDOW;
  for (let i = 0; i < 200; i++) {
    credit -= 32 * 1024;
    capped.incoming.window -= 32 * 1024;
    if (capped.incoming.window <= MAX_WINDOW / 2) ssh2WindowAdjust(capped);
    for (const [id, amt] of sent.splice(0)) if (id === 7) credit += amt;
    // ssh2's view always equals what the peer was really granted (no dropped data).
    expect(capped.incoming.window).toBe(credit);
    if (i > 70) expect(credit).toBeLessThanOrEqual(128 * 1024);
  }

  // An uncapped channel on the same protocol still gets ssh2's full refill.
  plain.incoming.window = 100;
  ssh2WindowAdjust(plain);
  expect(sent).toEqual([[8, MAX_WINDOW - 100]]);
});

test('re-grants once per half cap, not once per packet, and never starves the peer', () => {
  const sent: Array<[number, number]> = [];
  const proto = { channelWindowAdjust: (id: number, amt: number) => { sent.push([id, amt]); } };
  const ch = fakeChannel(3, proto);
  const cap = 128 * 1024;
  capReceiveWindow(ch, cap);
  let credit = MAX_WINDOW;
  const adjusts: number[] = [];
  const packets = 2000;
  for (let i = 0; i < packets; i++) {
    expect(credit).toBeGreaterThanOrEqual(32 * 1024); // the peer can always send a full packet
    credit -= 32 * 1024;
    ch.incoming.window -= 32 * 1024;
    if (ch.incoming.window <= MAX_WINDOW / 2) ssh2WindowAdjust(ch);
    for (const [, amt] of sent.splice(0)) { credit += amt; adjusts.push(amt); }
    expect(ch.incoming.window).toBe(credit);
  }
  const steady = adjusts.slice(2);
  expect(steady.every((a) => a >= cap / 2)).toBe(true);
  // 2000 packets of 32 KiB: about one adjust per 64 KiB after the opening 2 MiB, not 2000.
  expect(adjusts.length).toBeLessThanOrEqual(Math.ceil((packets * 32 * 1024 - MAX_WINDOW) / (cap / 2)) + 2);
});

test('does nothing to objects that are not ssh2 channels', () => {
  const d = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  expect(() => capReceiveWindow(d, 1024)).not.toThrow();
});

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

test('does nothing to objects that are not ssh2 channels', () => {
  const d = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  expect(() => capReceiveWindow(d, 1024)).not.toThrow();
});

import { patchChannelDestroy, patchChannelOverrun, patchChannelRegrant, sentPastWindow } from '../../src/transport/ssh2-channel';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Channel } = require('ssh2/lib/Channel') as { Channel: new (client: unknown, info: unknown, opts?: unknown) => import('node:stream').Duplex & { close(): void } };

function channel(sent: string[]) {
  const side = (id: number) => ({ id, window: 2 * 1024 * 1024, packetSize: 32 * 1024, state: 'open' });
  const client = {
    _protocol: {
      channelEOF: () => sent.push('EOF'),
      channelClose: () => sent.push('CLOSE'),
      channelData: (_id: number, d: Buffer) => sent.push(`DATA ${d.toString()}`),
      channelWindowAdjust: () => {},
    },
  };
  return new Channel(client, { type: 'direct-tcpip', incoming: side(1), outgoing: side(2) });
}

const tick = () => new Promise((r) => setImmediate(r));

test('patched once, and only when ssh2 still has the shape we know', () => {
  patchChannelDestroy();
  expect(patchChannelDestroy()).toBe(false);
});

test('destroy() after the channel finished: CLOSE only, no end() (which would build a dropped error)', async () => {
  patchChannelDestroy();
  const sent: string[] = [];
  const ch = channel(sent);
  ch.write(Buffer.from('hi'));
  ch.end();
  await tick();
  expect(ch.writableFinished).toBe(true);
  const end = jest.spyOn(ch, 'end');
  ch.destroy();
  ch.destroy();
  expect(end).not.toHaveBeenCalled();
  expect(sent).toEqual(['DATA hi', 'EOF', 'CLOSE']);
});

test('destroy() on an open channel still ends it (EOF) and closes it, as ssh2 does', async () => {
  patchChannelDestroy();
  const sent: string[] = [];
  const ch = channel(sent);
  ch.destroy();
  await tick();
  expect(sent).toContain('EOF');
  expect(sent).toContain('CLOSE');
  expect(ch.writableEnded).toBe(true);
});

describe('patchChannelRegrant', () => {
  const MAX = 2 * 1024 * 1024;
  const STEP = 128 * 1024;

  /** A channel as ssh2's CHANNEL_DATA handler drives it: window down, then push(). */
  function receiver() {
    const adjusts: number[] = [];
    const side = (id: number) => ({ id, window: MAX, packetSize: 32 * 1024, state: 'open' });
    const client = { _protocol: { channelWindowAdjust: (_id: number, n: number) => adjusts.push(n) } };
    const ch = new Channel(client, { type: 'direct-tcpip', incoming: side(1), outgoing: side(2) }) as unknown as import('node:stream').Duplex & {
      incoming: { window: number };
      outgoing: { state: string };
    };
    const receive = (bytes: number) => {
      ch.incoming.window -= bytes;
      return ch.push(Buffer.alloc(bytes));
    };
    return { ch, adjusts, receive };
  }

  test('patched once; a step of 0 or of the whole window leaves ssh2 as it is', () => {
    expect(patchChannelRegrant(0)).toBe(false);
    expect(patchChannelRegrant(MAX)).toBe(false);
    patchChannelRegrant(STEP);
    expect(patchChannelRegrant(STEP)).toBe(false);
  });

  test('re-grants what was used once a step is used, not at half the window', () => {
    patchChannelRegrant(STEP);
    const { ch, adjusts, receive } = receiver();
    ch.resume();
    receive(32 * 1024);
    receive(64 * 1024);
    expect(adjusts).toEqual([]);
    receive(32 * 1024);
    expect(adjusts).toEqual([STEP]);
    expect(ch.incoming.window).toBe(MAX);
    receive(100 * 1024);
    receive(100 * 1024);
    expect(adjusts).toEqual([STEP, 200 * 1024]);
  });

  test('a full readable buffer stops the re-grants (ssh2 re-grants once it is read)', () => {
    patchChannelRegrant(STEP);
    const { ch, adjusts, receive } = receiver();
    ch.pause();
    let room = true;
    for (let i = 0; i < 64 && room; i++) room = receive(32 * 1024);
    expect(room).toBe(false);
    const granted = adjusts.reduce((a, b) => a + b, 0);
    // Never more credit out than the buffer can still take, as with ssh2's own rule.
    expect(granted).toBeLessThanOrEqual(MAX);
    expect(adjusts.length).toBeGreaterThan(0);
    const before = adjusts.length;
    receive(32 * 1024);
    expect(adjusts.length).toBe(before);
  });

  test('no re-grant on a closed channel, nor for the end of the stream', () => {
    patchChannelRegrant(STEP);
    const { ch, adjusts, receive } = receiver();
    ch.resume();
    ch.outgoing.state = 'closed';
    receive(STEP * 2);
    ch.push(null);
    expect(adjusts).toEqual([]);
  });
});

describe('patchChannelOverrun', () => {
  test('a peer that sent more than its window gets the channel closed, and the data is dropped', async () => {
    patchChannelOverrun();
    expect(patchChannelOverrun()).toBe(false);
    patchChannelRegrant(128 * 1024); // composes with it, in either order
    expect((Channel.prototype as unknown as Record<symbol, unknown>)[Symbol.for('remote-assist.channelRegrant')]).toBe(true);
    const sent: string[] = [];
    const ch = channel(sent) as ReturnType<typeof channel> & { incoming: { window: number } };
    const got: Buffer[] = [];
    ch.on('data', (d: Buffer) => got.push(d));
    // As ssh2's CHANNEL_DATA handler does: window down, then push(). 10,000 were left.
    ch.incoming.window = 10_000 - 20_000;
    expect(ch.push(Buffer.alloc(20_000, 2))).toBe(false);
    await tick();
    expect(got).toEqual([]);
    expect(sent).toContain('CLOSE');
    expect(sentPastWindow(ch)).toBe(true); // for the broker's audit line
    ch.incoming.window -= 20_000;
    expect(ch.push(Buffer.alloc(20_000, 3))).toBe(false); // still dropped
    await tick();
    expect(got).toEqual([]);
  });

  test('a window used up exactly is not an overrun', async () => {
    patchChannelOverrun();
    const sent: string[] = [];
    const ch = channel(sent) as ReturnType<typeof channel> & { incoming: { window: number } };
    ch.resume();
    ch.incoming.window = 0;
    expect(ch.push(Buffer.alloc(10))).toBe(true);
    await tick();
    expect(sent).not.toContain('CLOSE');
    expect(sentPastWindow(ch)).toBe(false);
  });
});

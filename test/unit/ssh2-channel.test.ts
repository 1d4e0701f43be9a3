import { patchChannelDestroy } from '../../src/transport/ssh2-channel';

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

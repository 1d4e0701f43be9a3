import net from 'node:net';
import { createHash } from 'node:crypto';
import { relay, halfClose, CHANNEL_QUEUE_LIMIT } from '../../src/transport/relay';
import { generateIdentity } from '../../src/transport/keys';
import { readRemainder } from '../../src/protocol/socks-handshake';
import { PassThrough, Duplex } from 'node:stream';

/** A connected pair of TCP sockets on loopback, half-open allowed. */
async function socketPair(): Promise<[net.Socket, net.Socket, () => void]> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((r) => client.once('connect', r));
  return [client, await accepted, () => server.close()];
}

function collect(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
  });
}

describe('relay', () => {
  test('moves data both ways intact, counts bytes, half-close keeps the other direction open', async () => {
    const [left, leftPeer, closeA] = await socketPair();
    const [rightPeer, right, closeB] = await socketPair();
    const done = relay(leftPeer, rightPeer);

    const upload = Buffer.alloc(3 * 1024 * 1024, 7);
    const gotAtRight = collect(right);
    left.end(upload); // EOF from the left after 3 MiB
    const atRight = await gotAtRight;
    expect(createHash('sha256').update(atRight).digest('hex')).toBe(createHash('sha256').update(upload).digest('hex'));

    // The right side answers after seeing EOF: the reverse direction still works.
    const gotAtLeft = collect(left);
    right.end(Buffer.from('reply after eof'));
    expect((await gotAtLeft).toString()).toBe('reply after eof');

    const r = await done;
    expect(r.aToB).toBe(upload.length);
    expect(r.bToA).toBe('reply after eof'.length);
    closeA();
    closeB();
  });

  test('a reset on one side tears down the other and resolves with the error', async () => {
    const [left, leftPeer, closeA] = await socketPair();
    const [rightPeer, right, closeB] = await socketPair();
    const done = relay(leftPeer, rightPeer);
    const rightClosed = new Promise((r) => right.once('close', r));
    right.on('error', () => {});
    right.once('end', () => right.end());
    right.resume();
    left.write('some bytes first');
    await new Promise((r) => setTimeout(r, 20));
    left.resetAndDestroy();
    const r = await done;
    expect((r.error as NodeJS.ErrnoException | undefined)?.code).toBe('ECONNRESET');
    await rightClosed;
    closeA();
    closeB();
  });

  test('when one side closes, the other gets flushTimeoutMs to flush what it holds, then is destroyed', async () => {
    const a = new PassThrough();
    // b never finishes its writes: its peer stopped reading
    const b = new Duplex({ read() {}, write(_chunk, _enc, _cb) { /* never calls back */ } });
    const done = relay(a, b, { flushTimeoutMs: 50 });
    a.write('stuck');
    await new Promise((r) => setImmediate(r));
    const t0 = performance.now();
    a.destroy();
    const r = await done;
    expect(b.destroyed).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
    expect(r.aToB).toBe(5);
  });

  test('a side that has already flushed is destroyed at once when the other closes, without a flush timer', async () => {
    // Sockets' directions are independent: a sends EOF, b's write side finishes, both stay open
    const a = new Duplex({ read() {}, write(_chunk, _enc, cb) { cb(); } });
    const b = new Duplex({ read() {}, write(_chunk, _enc, cb) { cb(); } });
    const done = relay(a, b, { flushTimeoutMs: 60_000 });
    a.push(null); // EOF from a: the relay ends b, which finishes
    await new Promise((r) => setImmediate(r));
    expect(b.writableFinished).toBe(true);
    expect(b.destroyed).toBe(false);
    const timers = jest.spyOn(global, 'setTimeout');
    try {
      a.destroy();
      await done;
      expect(b.destroyed).toBe(true);
      expect(timers).not.toHaveBeenCalled();
    } finally {
      timers.mockRestore();
    }
  });

  test('plain EOF from one side is only a half-close: the relay waits for the other side', async () => {
    const [left, leftPeer, closeA] = await socketPair();
    const [rightPeer, right, closeB] = await socketPair();
    let settled = false;
    const done = relay(leftPeer, rightPeer).then((r) => { settled = true; return r; });
    const rightEnded = collect(right);
    left.end();
    await rightEnded;
    await new Promise((r) => setTimeout(r, 30));
    expect(settled).toBe(false);
    right.end();
    await done;
    closeA();
    closeB();
  });

  test('an EOF that came before the relay began is passed on, and the relay still finishes', async () => {
    const [left, leftPeer, closeA] = await socketPair();
    const [rightPeer, right, closeB] = await socketPair();
    const early: Buffer[] = [];
    leftPeer.on('data', (c: Buffer) => early.push(c));
    left.end('early bytes');
    await new Promise((r) => leftPeer.once('end', r));
    leftPeer.removeAllListeners('data');
    leftPeer.pause();
    expect(leftPeer.readableEnded).toBe(true);

    const done = relay(leftPeer, rightPeer);
    const gotAtRight = collect(right); // resolves on the EOF the relay passed on
    expect((await gotAtRight).length).toBe(0);
    const gotAtLeft = collect(left);
    right.end('answer');
    expect((await gotAtLeft).toString()).toBe('answer');
    const r = await done;
    expect(r.bToA).toBe('answer'.length);
    expect(Buffer.concat(early).toString()).toBe('early bytes');
    closeA();
    closeB();
  });

  test('halfClose on a plain stream ends it; on an ssh2 server channel it sends only EOF after queued writes', async () => {
    const p = new PassThrough();
    halfClose(p);
    expect(p.writableEnded).toBe(true);

    const order: string[] = [];
    const fake = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) { order.push(`write:${chunk.length}`); setTimeout(cb, 5); },
    }) as Duplex & { server: boolean; eof: () => void };
    fake.server = true;
    // Wait for the EOF itself, not a fixed time: a loaded CI machine delayed the
    // 5 ms write callbacks past a 30 ms sleep once.
    const eofSent = new Promise<void>((resolve) => {
      fake.eof = () => { order.push('eof'); resolve(); };
    });
    fake.write(Buffer.alloc(10));
    halfClose(fake);
    await eofSent;
    expect(order).toEqual(['write:10', 'write:0', 'eof']);
    expect(fake.writableEnded).toBe(false);
  });
});

test('readRemainder reads one line of reason text, bounded', async () => {
  const p = new PassThrough();
  const text = readRemainder(p, 16, 1000);
  p.end('refused by device because reasons\nsecond line');
  expect(await text).toBe('refused by devic');
  const q = new PassThrough();
  const t2 = readRemainder(q, 512, 50);
  expect(await t2).toBe('');
});

describe('relay into an SSH channel', () => {
  /** A real ssh2 connection on loopback; the server side's channel is handed to the test unread. */
  async function sshPair() {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Server, Client } = require('ssh2') as typeof import('ssh2');
    const server = new Server({ hostKeys: [generateIdentity().privateKey] });
    const serverChannel = new Promise<Duplex>((resolve) => {
      server.on('connection', (conn) => {
        conn.on('authentication', (ctx) => ctx.accept());
        conn.on('ready', () => conn.on('tcpip', (accept) => {
          const ch = accept();
          ch.pause();
          resolve(ch);
        }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve()).once('error', reject);
      client.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, username: 'u' });
    });
    const channel = await new Promise<Duplex>((resolve, reject) => {
      client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, ch) => (err ? reject(err) : resolve(ch)));
    });
    return { channel, peer: await serverChannel, close: () => { client.end(); server.close(); } };
  }

  /** One real ssh2 connection; `open()` gives a channel and the server's side of it (paused). */
  async function sshConnection() {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Server, Client } = require('ssh2') as typeof import('ssh2');
    const server = new Server({ hostKeys: [generateIdentity().privateKey] });
    const accepted: Duplex[] = [];
    const waiting: Array<(d: Duplex) => void> = [];
    server.on('connection', (conn) => {
      conn.on('authentication', (ctx) => ctx.accept());
      conn.on('ready', () => conn.on('tcpip', (accept) => {
        const ch = accept();
        ch.pause();
        const w = waiting.shift();
        if (w) w(ch);
        else accepted.push(ch);
      }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve()).once('error', reject);
      client.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, username: 'u' });
    });
    const open = async () => {
      const peer = new Promise<Duplex>((r) => { const a = accepted.shift(); if (a) r(a); else waiting.push(r); });
      const channel = await new Promise<Duplex>((resolve, reject) => {
        client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, ch) => (err ? reject(err) : resolve(ch)));
      });
      return { channel, peer: await peer };
    };
    return { open, close: () => { client.end(); server.close(); } };
  }

  test('a small chunk read in the same turn as a bulk one leaves first; each stream keeps its order and its EOF', async () => {
    const { open, close } = await sshConnection();
    try {
      const bulk = await open();
      const small = await open();
      const arrivals: string[] = [];
      const received = { bulk: [] as Buffer[], small: [] as Buffer[] };
      const ends = (['bulk', 'small'] as const).map((name) => {
        const { peer } = name === 'bulk' ? bulk : small;
        peer.on('data', (c: Buffer) => { arrivals.push(name); received[name].push(c); });
        peer.resume();
        return new Promise((r) => peer.once('end', r));
      });
      const bulkSrc = new PassThrough();
      const smallSrc = new PassThrough();
      relay(bulkSrc, bulk.channel);
      relay(smallSrc, small.channel);
      // Both read in one turn, the bulk stream's first: the other's reply must not wait behind it.
      const big = Buffer.alloc(64 * 1024, 0x61);
      bulkSrc.write(big);
      bulkSrc.end(Buffer.from('tail')); // after the bulk chunk, then EOF
      smallSrc.end(Buffer.from('tiny reply'));
      await Promise.all(ends);
      expect(arrivals[0]).toBe('small');
      expect(Buffer.concat(received.small).toString()).toBe('tiny reply');
      expect(Buffer.concat(received.bulk).equals(Buffer.concat([big, Buffer.from('tail')]))).toBe(true);
    } finally {
      close();
    }
  });

  test('a channel out of window holds the source instead of reading it into memory', async () => {
    const { channel, peer, close } = await sshPair();
    try {
      const src = new PassThrough({ highWaterMark: 64 * 1024 });
      const total = 8 * 1024 * 1024;
      const data = Buffer.alloc(total);
      for (let i = 0; i < total; i += 4) data.writeUInt32BE(i, i);
      let offered = 0;
      const feed = () => { // like a TCP source: write while the source accepts more
        while (offered < total && src.write(data.subarray(offered, offered + 64 * 1024))) offered += 64 * 1024;
        if (offered < total) src.once('drain', () => { offered += 64 * 1024; feed(); });
        else src.end();
      };
      const done = relay(src, channel);
      feed();
      // The peer reads nothing: its 2 MiB window fills, then the relay must stop reading.
      await new Promise((r) => setTimeout(r, 300));
      expect(channel.writableLength).toBeLessThanOrEqual(CHANNEL_QUEUE_LIMIT + 64 * 1024);
      // The peer took its window plus what ssh2 re-granted before its read buffer filled (3 MiB);
      // without the limit the channel would also have queued another 2 MiB from the source.
      expect(offered).toBeLessThan(4 * 1024 * 1024);

      // Once the peer reads, everything arrives, in order.
      const received: Buffer[] = [];
      peer.on('data', (c: Buffer) => received.push(c));
      const ended = new Promise((r) => peer.once('end', r));
      peer.resume();
      await ended;
      expect(Buffer.concat(received).equals(data)).toBe(true);
      peer.end();
      const r = await done;
      expect(r.aToB).toBe(total);
    } finally {
      close();
    }
  });
  test('once both directions are done, a client channel sends CLOSE in the same turn as its EOF', async () => {
    const { channel, peer, close } = await sshPair();
    try {
      // A device's relay: the channel from the broker and a socket to the target.
      const got: Buffer[] = [];
      const other = new Duplex({ read() {}, write(c: Buffer, _e, cb) { got.push(c); cb(); } });
      const done = relay(channel, other);
      const peerData: Buffer[] = [];
      peer.on('data', (c: Buffer) => peerData.push(c));
      peer.resume();
      peer.write('request');
      (peer as unknown as { eof(): void }).eof(); // the helper's EOF, as the broker forwards it
      await new Promise((r) => channel.once('end', r));
      // The target answers and ends: the relay sends EOF, and with it CLOSE (listeners run in order).
      const state = new Promise<string | undefined>((r) => other.once('end', () => r((channel as unknown as { outgoing: { state: string } }).outgoing.state)));
      other.push('reply');
      other.push(null);
      expect(await state).toBe('closing');
      const r = await done;
      expect([r.aToB, r.bToA]).toEqual([7, 5]);
      expect(Buffer.concat(got).toString()).toBe('request');
      expect(Buffer.concat(peerData).toString()).toBe('reply');
    } finally {
      close();
    }
  });

  test('the peer closing a channel that is holding its source ends the relay and frees the source', async () => {
    const { channel, peer, close } = await sshPair();
    try {
      const src = new PassThrough({ highWaterMark: 64 * 1024 });
      const done = relay(src, channel);
      const chunk = Buffer.alloc(64 * 1024, 1);
      // more than the 3 MiB the silent peer takes (the source buffers the rest): the relay holds the source
      for (let i = 0; i < 64; i++) src.write(chunk);
      // Poll (bounded) rather than sleep a fixed time: a loaded machine may take longer to fill the window.
      for (const deadline = Date.now() + 10_000; channel.writableLength === 0 && Date.now() < deadline;) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(channel.writableLength).toBeGreaterThan(0);
      peer.destroy(); // the far end goes away while data waits for window
      const r = await done; // resolves only once both sides closed
      expect(r.aToB).toBeGreaterThan(2 * 1024 * 1024);
      expect(src.destroyed).toBe(true);
    } finally {
      close();
    }
  });
});

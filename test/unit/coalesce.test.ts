import net from 'node:net';
import { coalesceWrites } from '../../src/transport/coalesce';

describe('coalesceWrites', () => {
  test('writes made until the end of the turn, promise continuations included, leave in one writev', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const sock = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1' });
    await new Promise((r) => sock.once('connect', r));
    const peer = await accepted;
    try {
      const calls: number[] = []; // chunks per call into the kernel
      const s = sock as unknown as { _write: (...a: unknown[]) => void; _writev: (chunks: unknown[], cb: unknown) => void };
      const write1 = s._write.bind(sock);
      const writev = s._writev.bind(sock);
      s._write = (...a: unknown[]) => { calls.push(1); write1(...a); };
      s._writev = (chunks: unknown[], cb: unknown) => { calls.push(chunks.length); writev(chunks, cb); };
      const got: Buffer[] = [];
      peer.on('data', (c: Buffer) => got.push(c));

      coalesceWrites(sock);
      coalesceWrites(sock); // idempotent
      // As when a socket's data arrives: one callback writes, and a promise it settles
      // writes again from a continuation (after the callback's nextTicks have run).
      const queued = await new Promise<number>((resolve) => setTimeout(() => {
        sock.write('open ');
        void Promise.resolve().then(() => Promise.resolve()).then(() => {
          sock.write('confirm');
          resolve(sock.writableLength);
        });
      }, 0));
      expect(queued).toBe(12); // nothing has left yet
      await new Promise((r) => setImmediate(r));
      expect(calls).toEqual([2]);
      for (const deadline = Date.now() + 5000; Buffer.concat(got).length < 12 && Date.now() < deadline;) {
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(Buffer.concat(got).toString()).toBe('open confirm');

      sock.write('next turn'); // a later turn is corked anew
      await new Promise((r) => setImmediate(r));
      expect(calls).toEqual([2, 1]);
    } finally {
      sock.destroy();
      peer.destroy();
      server.close();
    }
  });
});

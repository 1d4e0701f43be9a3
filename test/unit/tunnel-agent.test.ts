import http from 'node:http';
import { PassThrough, type Duplex } from 'node:stream';
import { asSocket, TunnelAgent } from '../../src/helper/tunnel-agent';
import { closeServer, FakeOpener, listen } from './fake-opener';

test('setTimeout on a tunnel stream behaves like net.Socket: 0 with a callback removes it', () => {
  const s = asSocket(new PassThrough());
  const cb = () => {};
  const base = s.listenerCount('timeout');
  s.setTimeout(1000, cb);
  expect(s.listenerCount('timeout')).toBe(base + 1);
  s.setTimeout(0, cb);
  expect(s.listenerCount('timeout')).toBe(base);
  s.destroy();
});

test('many keep-alive requests over one tunnel stream do not pile up timeout listeners', async () => {
  const server = http.createServer((_req, res) => res.end('ok'));
  server.keepAliveTimeout = 10_000;
  const port = await listen(server);
  const opener = new FakeOpener(() => ({ port }));
  const agent = new TunnelAgent(opener, { timeout: 5_000 });
  try {
    for (let i = 0; i < 40; i++) {
      const body = await new Promise<string>((resolve, reject) => {
        const req = http.get({ host: 'intranet.test', port: 80, path: `/${i}`, agent, timeout: 5_000 }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (c: string) => { text += c; }).on('end', () => resolve(text));
        });
        req.on('error', reject);
      });
      expect(body).toBe('ok');
    }
    expect(opener.opened).toHaveLength(1); // one tunnel stream served all 40
    const [stream] = [...opener.live] as Duplex[];
    expect(stream!.listenerCount('timeout')).toBeLessThanOrEqual(2); // was 1 more per request
  } finally {
    agent.destroy();
    await closeServer(server);
  }
});

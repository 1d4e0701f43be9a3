/**
 * watchWhileOpening: a local client that ends or closes while its stream is being
 * opened aborts the watch's signal (listeners run once; removed ones and ones added
 * afterwards never run), and bytes it sent meanwhile come back in order from stop().
 */
import { watchWhileOpening } from '../../src/transport/early-close';
import { socketPair } from './socket-pair';

describe('watchWhileOpening', () => {
  test('the client ending aborts once; removed and late listeners never run', async () => {
    const { client, server, close } = await socketPair();
    try {
      const watch = watchWhileOpening(server);
      const calls: string[] = [];
      const kept = () => calls.push('kept');
      const removed = () => calls.push('removed');
      watch.signal.addEventListener('abort', kept, { once: true });
      watch.signal.addEventListener('abort', removed, { once: true });
      watch.signal.removeEventListener('abort', removed);
      expect(watch.signal.aborted).toBe(false);
      const aborted = new Promise<void>((r) => watch.signal.addEventListener('abort', () => r()));
      client.end();
      await aborted;
      expect(watch.signal.aborted).toBe(true);
      watch.signal.addEventListener('abort', () => calls.push('late'));
      server.destroy(); // 'close' follows 'end': still only one abort
      await new Promise((r) => server.once('close', r));
      expect(calls).toEqual(['kept']);
      watch.stop();
    } finally {
      close();
    }
  });

  test('bytes that arrive while opening come back from stop(), and nothing aborts', async () => {
    const { client, server, close } = await socketPair();
    try {
      const watch = watchWhileOpening(server);
      let aborts = 0;
      watch.signal.addEventListener('abort', () => aborts++);
      client.write('GET / HTTP/1.1\r\n');
      client.write('\r\n');
      for (const deadline = Date.now() + 5000; server.bytesRead < 18 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 5));
      expect(watch.stop().toString()).toBe('GET / HTTP/1.1\r\n\r\n');
      client.end(); // after stop(): the watch no longer listens
      await new Promise((r) => setTimeout(r, 50));
      expect(aborts).toBe(0);
      expect(watch.signal.aborted).toBe(false);
    } finally {
      close();
    }
  });
});

/**
 * Prometheus metrics: `broker serve --metrics 127.0.0.1:0` reports the bound address
 * in its listening line and counts sessions, helpers, streams by outcome, bytes and
 * refused joins as they happen.
 */
import http from 'node:http';
import { curlSocks, closedPort, socksRep, spawnJoin, startBroker, startExpose, startJoin, startTargets, wrongCode } from './harness';

function scrape(addr: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(`http://${addr}/metrics`, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

test('sessions, helpers, streams, bytes and refused joins are counted', async () => {
  const broker = await startBroker({ args: ['--metrics', '127.0.0.1:0'] });
  const listening = broker.proc.lines.find((l) => l.event === 'listening')!;
  const addr = String(listening.metrics);
  expect(addr).toMatch(/^127\.0\.0\.1:\d+$/);

  let text = await scrape(addr);
  expect(value(text, 'broker_sessions')).toBe(0);

  const targets = await startTargets();
  const refusedPort = await closedPort();
  const expose = await startExpose(broker, ['--allow', `127.0.0.1:${targets.httpPort}`, '--allow', `127.0.0.1:${refusedPort}`]);
  const join = await startJoin(broker, expose.code);
  expect((await curlSocks(join.socks, `http://127.0.0.1:${targets.httpPort}/`)).stdout.trim()).toBe(targets.marker);
  expect(await socksRep(join.socks, '127.0.0.1', refusedPort)).toBe(0x05);
  expect(await socksRep(join.socks, '127.0.0.1', 22)).toBe(0x02);
  const bad = await spawnJoin(broker, wrongCode(expose.code));
  expect(await bad.waitExit(20_000)).toBe(3);

  // Byte counters are added when a stream closes; give the broker a moment.
  const deadline = Date.now() + 5000;
  do {
    text = await scrape(addr);
    if (value(text, 'broker_stream_bytes_total{direction="to_helper"}') > 0) break;
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < deadline);

  expect(value(text, 'broker_sessions')).toBe(1);
  expect(value(text, 'broker_helpers')).toBe(1);
  expect(value(text, 'broker_streams_total{via="direct-tcpip",outcome="succeeded"}')).toBeGreaterThanOrEqual(1);
  expect(value(text, 'broker_streams_total{via="direct-tcpip",outcome="connection refused"}')).toBe(1);
  expect(value(text, 'broker_streams_total{via="direct-tcpip",outcome="connection not allowed by ruleset"}')).toBe(1);
  expect(value(text, 'broker_stream_bytes_total{direction="to_helper"}')).toBeGreaterThan(targets.marker.length);
  expect(value(text, 'broker_join_refusals_total{code="BRK_BAD_CODE"}')).toBe(1);
  expect(text).toContain('broker_stream_open_seconds_bucket');
});

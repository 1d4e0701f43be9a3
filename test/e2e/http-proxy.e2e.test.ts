/**
 * The helper's HTTP proxy with real processes and real curl: absolute-form GET,
 * CONNECT (forced with -p, and for https), honest 403/502 with X-Broker-Error, and
 * keep-alive (curl fetching 5 URLs opens ONE connection at the target, one stream
 * at the device).
 */
import {
  Scope, closedPort, curl, deviceStreams, parseCurlHead, selfSignedCert, startBroker, startExpose, startHttpTarget,
  startHttpsTarget, startJoin, tempDir, until, type ExposeInfo, type JoinInfo,
} from './tools-harness';
import fs from 'node:fs';
import path from 'node:path';

jest.setTimeout(60_000);

const file = new Scope();
let dir: string;
let web: Awaited<ReturnType<typeof startHttpTarget>>;
let keep: Awaited<ReturnType<typeof startHttpTarget>>;
let secure: Awaited<ReturnType<typeof startHttpsTarget>>;
let refusedPort: number;
let deniedPort: number;
let expose: ExposeInfo;
let join: JoinInfo;
let proxy: string;

beforeAll(async () => {
  dir = tempDir();
  file.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tlsFiles = await selfSignedCert(dir);
  web = await startHttpTarget(file, 'web-target');
  keep = await startHttpTarget(file, 'keepalive-target');
  secure = await startHttpsTarget(file, tlsFiles, 'tls-target');
  const denied = await startHttpTarget(file, 'never-reached'); // listening, but not allowed
  deniedPort = denied.port;
  refusedPort = await closedPort();
  const broker = await startBroker(file, dir);
  const kb = path.join(dir, 'known_brokers');
  expose = await startExpose(file, broker, kb, [`127.0.0.1:${web.port}`, `127.0.0.1:${keep.port}`, `127.0.0.1:${secure.port}`, `127.0.0.1:${refusedPort}`]);
  join = await startJoin(file, broker, expose.code, kb);
  proxy = `http://${join.http}`;
}, 60_000);

afterAll(async () => {
  await file.cleanup();
}, 30_000);

test('ready event reports the HTTP proxy address', () => {
  expect(join.ready.http).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(join.ready.httpProxyUrl).toBe(`http://${join.http}`);
});

test('curl -x: absolute-form GET through the device', async () => {
  const r = await curl(['-x', proxy, `http://127.0.0.1:${web.port}/hello?x=1`]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toBe('web-target /hello?x=1\n');
  expect(web.requests).toContain('GET /hello?x=1');
  await until(() => deviceStreams(expose, `127.0.0.1:${web.port}`).length > 0, 'the device to report the stream');
  await join.proc.waitLine((l) => l.event === 'http-stream' && l.method === 'GET' && l.target === `127.0.0.1:${web.port}` && l.status === 200, 'http-stream event');
});

test('curl -p -x: CONNECT tunnel through the device', async () => {
  const r = await curl(['-v', '-p', '-x', proxy, `http://127.0.0.1:${web.port}/tunnelled`]);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe('web-target /tunnelled\n');
  expect(r.stderr).toMatch(new RegExp(`CONNECT 127\\.0\\.0\\.1:${web.port} HTTP/1\\.1`));
  expect(r.stderr).toMatch(/HTTP\/1\.1 200 Connection Established/);
  await join.proc.waitLine((l) => l.event === 'http-stream' && l.method === 'CONNECT' && l.target === `127.0.0.1:${web.port}` && l.status === 200, 'CONNECT http-stream event');
});

test('https through CONNECT to a self-signed server (curl -k)', async () => {
  const url = `https://127.0.0.1:${secure.port}/secret`;
  const strict = await curl(['-x', proxy, url]);
  expect(strict.code).toBe(60); // CURLE_PEER_FAILED_VERIFICATION: TLS really is end to end
  const r = await curl(['-k', '-v', '-x', proxy, url]);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe('tls-target secure /secret\n');
  expect(r.stderr).toMatch(/CONNECT 127\.0\.0\.1:\d+ HTTP\/1\.1/);
  expect(r.stderr).toMatch(/subject: CN=test\.local/);
  await until(() => deviceStreams(expose, `127.0.0.1:${secure.port}`).length >= 2, 'the device to report both streams');
});

test('denied destination: 403 with X-Broker-Error BRK_POLICY_DENIED and a one-line reason (GET and CONNECT)', async () => {
  const g = parseCurlHead((await curl(['-i', '-x', proxy, `http://127.0.0.1:${deniedPort}/`])).stdout);
  expect(g.status).toBe(403);
  expect(g.headers['x-broker-error']).toBe('BRK_POLICY_DENIED');
  expect(g.body).toMatch(new RegExp(`^127\\.0\\.0\\.1:${deniedPort}[^\\n]*(denied|allow)[^\\n]*\\n$`));

  const c = await curl(['-v', '-p', '-x', proxy, `http://127.0.0.1:${deniedPort}/`]);
  expect(c.code).toBe(56); // CURLE_RECV_ERROR: "CONNECT tunnel failed, response 403"
  expect(c.stderr).toMatch(/HTTP\/1\.1 403 Forbidden/);
  expect(c.stderr).toMatch(/X-Broker-Error: BRK_POLICY_DENIED/);
  expect(c.stderr).toMatch(/CONNECT tunnel failed, response 403/);
  await join.proc.waitLine((l) => l.event === 'http-stream' && l.code === 'BRK_POLICY_DENIED' && l.target === `127.0.0.1:${deniedPort}`, 'denied http-stream event');
});

test('refused destination: 502 with X-Broker-Error BRK_CONN_REFUSED (GET and CONNECT)', async () => {
  const g = parseCurlHead((await curl(['-i', '-x', proxy, `http://127.0.0.1:${refusedPort}/`])).stdout);
  expect(g.status).toBe(502);
  expect(g.headers['x-broker-error']).toBe('BRK_CONN_REFUSED');
  expect(g.body).toMatch(/^[^\n]*refused[^\n]*\n$/i);

  const c = await curl(['-v', '-p', '-x', proxy, `http://127.0.0.1:${refusedPort}/`]);
  expect(c.code).toBe(56);
  expect(c.stderr).toMatch(/HTTP\/1\.1 502 Bad Gateway/);
  expect(c.stderr).toMatch(/X-Broker-Error: BRK_CONN_REFUSED/);
});

test('keep-alive: curl fetching 5 URLs in one run opens ONE connection at the target and ONE device stream', async () => {
  const before = keep.connections();
  const target = `127.0.0.1:${keep.port}`;
  const streamsBefore = deviceStreams(expose, target).length;
  const urls = [1, 2, 3, 4, 5].map((i) => `http://${target}/asset/${i}`);
  const r = await curl(['-x', proxy, ...urls]);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(urls.map((u) => `keepalive-target ${new URL(u).pathname}\n`).join(''));
  expect(keep.requests.slice(-5)).toEqual([1, 2, 3, 4, 5].map((i) => `GET /asset/${i}`));
  expect(keep.connections() - before).toBe(1);
  // give the device a moment to print any (unexpected) further stream-opened events
  await new Promise((res) => setTimeout(res, 200));
  expect(deviceStreams(expose, target).length - streamsBefore).toBe(1);
});

test('a second curl run reuses the pooled upstream stream (no new target connection)', async () => {
  const before = keep.connections();
  const r = await curl(['-x', proxy, `http://127.0.0.1:${keep.port}/again`]);
  expect(r.stdout).toBe('keepalive-target /again\n');
  expect(keep.connections()).toBe(before);
});

test('non-proxy (origin-form) request to the proxy port: 400 with a hint', async () => {
  const r = await curl(['-i', `http://${join.http}/index.html`]);
  const p = parseCurlHead(r.stdout);
  expect(p.status).toBe(400);
  expect(p.headers['x-broker-error']).toBe('BRK_BAD_REQUEST');
  expect(p.body).toMatch(/curl -x/);
});

/**
 * Diagnostics logic over a fake StreamOpener: check parsing (CLI flags and checks
 * files), tcp/http/https outcomes with the exact failure, TLS certificate details
 * against a self-signed server (fails by default, passes with insecure), per-check
 * timeout and the concurrency bound.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BrokerError } from '../../src/errors';
import { parseCheck, parseChecksFile, runChecks, type CheckResult } from '../../src/helper/diag';
import { formatTable } from '../../src/cli/diag';
import { FakeOpener, closeServer, listen, type Route } from './fake-opener';

const run = promisify(execFile);

describe('parseCheck', () => {
  test.each([
    ['tcp://10.0.0.5:22', 'tcp', { host: '10.0.0.5', port: 22, kind: 'ipv4' }, '/'],
    ['tcp://printer.lan:9100', 'tcp', { host: 'printer.lan', port: 9100, kind: 'domain' }, '/'],
    ['tcp://[fd00::1]:22', 'tcp', { host: 'fd00::1', port: 22, kind: 'ipv6' }, '/'],
    ['http://printer.lan/', 'http', { host: 'printer.lan', port: 80, kind: 'domain' }, '/'],
    ['http://printer.lan', 'http', { host: 'printer.lan', port: 80, kind: 'domain' }, '/'],
    ['http://10.0.0.5:8080/status?full=1', 'http', { host: '10.0.0.5', port: 8080, kind: 'ipv4' }, '/status?full=1'],
    ['HTTP://Printer.LAN/Path', 'http', { host: 'printer.lan', port: 80, kind: 'domain' }, '/Path'],
    ['https://printer.lan/', 'https', { host: 'printer.lan', port: 443, kind: 'domain' }, '/'],
    ['https://[fd00::1]:8443/x', 'https', { host: 'fd00::1', port: 8443, kind: 'ipv6' }, '/x'],
    ['  https://nas.lan:5001/  ', 'https', { host: 'nas.lan', port: 5001, kind: 'domain' }, '/'],
  ])('%s', (text, kind, target, p) => {
    const c = parseCheck(text);
    expect(c.kind).toBe(kind);
    expect(c.target).toEqual(target);
    expect(c.path).toBe(p);
    expect(c.url).toBe(text.trim());
  });

  test.each([
    ['', /expected tcp:\/\/HOST:PORT/],
    ['printer.lan:80', /unknown scheme printer\.lan:/],
    ['10.0.0.5', /expected tcp:\/\/HOST:PORT/],
    ['ftp://nas.lan/', /unknown scheme ftp:/],
    ['udp://10.0.0.5:53', /unknown scheme udp:/],
    ['tcp://10.0.0.5', /tcp:\/\/ needs a port/],
    ['tcp://10.0.0.5:0', /bad port 0/],
    ['tcp://10.0.0.5:99999', /expected tcp:\/\/HOST:PORT/],
    ['http://bad_host!/', /bad host name/],
    ['http://', /expected tcp/],
  ])('bad check %j -> BRK_BAD_OPTION', (text, message) => {
    let err: unknown;
    try { parseCheck(text); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('BRK_BAD_OPTION');
    expect((err as BrokerError).message).toMatch(message);
  });

  test('control characters in bad input are escaped in the message', () => {
    expect(() => parseCheck('tcp://x\u001b[31m')).toThrow(/\\x1b/);
  });
});

describe('parseChecksFile', () => {
  test('one URL per line; comments, blank lines, CRLF and surrounding space ignored', () => {
    const text = '# services at the branch\r\ntcp://10.0.0.5:22\r\n\r\n   http://printer.lan/   # the printer\n\t\n# https://commented.out/\nhttps://nas.lan:5001/\n';
    expect(parseChecksFile(text).map((c) => [c.kind, c.url])).toEqual([
      ['tcp', 'tcp://10.0.0.5:22'],
      ['http', 'http://printer.lan/'],
      ['https', 'https://nas.lan:5001/'],
    ]);
  });

  test('empty and comment-only files give no checks', () => {
    expect(parseChecksFile('')).toEqual([]);
    expect(parseChecksFile('# nothing\n\n   \n')).toEqual([]);
  });

  test('a bad line fails the whole file with BRK_BAD_OPTION naming it', () => {
    expect(() => parseChecksFile('tcp://10.0.0.5:22\nsmtp://mail.lan:25\n')).toThrow(/smtp:\/\/mail\.lan:25/);
    try { parseChecksFile('tcp://nohost\n'); } catch (e) { expect((e as BrokerError).code).toBe('BRK_BAD_OPTION'); }
  });
});

describe('runChecks over a fake opener', () => {
  let tmp: string;
  let web: http.Server;
  let webPort: number;
  let secure: https.Server;
  let securePort: number;
  let tcpOpen: net.Server;
  let tcpPort: number;
  let silent: net.Server;
  let silentPort: number;
  const sockets = new Set<net.Socket>();
  let opener: FakeOpener;

  const track = (s: net.Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)); };

  const route = (t: { host: string; port: number }): Route => {
    switch (t.host) {
      case 'web.lan': return { port: webPort };
      case 'test.local': return { port: securePort };
      case 'ssh.lan': return { port: tcpPort };
      case 'slow.lan': return { port: tcpPort, delayMs: 80 };
      case 'silent.lan': return { port: silentPort };
      case 'hang.lan': return { hang: true };
      case 'refused.lan': return { error: new BrokerError('BRK_CONN_REFUSED', `${t.host}:${t.port}: connection refused`) };
      case 'denied.lan': return { error: new BrokerError('BRK_POLICY_DENIED', `${t.host}:${t.port} is denied by rule "denied.lan"`) };
      case 'gone.lan': return { error: new BrokerError('BRK_HOST_UNREACHABLE', `${t.host}: host unreachable`) };
      default: return { error: new BrokerError('BRK_HOST_UNREACHABLE', `${t.host}: not in the fake`) };
    }
  };

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'diag-test-'));
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=test.local', '-days', '30',
      '-keyout', path.join(tmp, 'key.pem'), '-out', path.join(tmp, 'cert.pem')], { timeout: 30_000 });

    web = http.createServer((req, res) => {
      track(req.socket);
      if (req.url === '/missing') { res.writeHead(404, { 'content-type': 'text/plain' }); res.end('no such page\n'); return; }
      if (req.url === '/slow') { setTimeout(() => { res.writeHead(200); res.end('late'); }, 120); return; }
      const body = 'x'.repeat(1234);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    });
    webPort = await listen(web);
    secure = https.createServer({ key: fs.readFileSync(path.join(tmp, 'key.pem')), cert: fs.readFileSync(path.join(tmp, 'cert.pem')) }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<h1>secure</h1>');
    });
    secure.on('connection', track);
    securePort = await listen(secure);
    tcpOpen = net.createServer((s) => { track(s); s.on('error', () => {}); s.end('SSH-2.0-fake\r\n'); });
    tcpPort = await listen(tcpOpen);
    silent = net.createServer((s) => { track(s); s.on('error', () => {}); }); // accepts, never answers
    silentPort = await listen(silent);
  });

  afterAll(async () => {
    await closeServer(web, sockets);
    await closeServer(secure, sockets);
    await closeServer(tcpOpen, sockets);
    await closeServer(silent, sockets);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  beforeEach(() => {
    opener = new FakeOpener(route);
  });

  const one = async (url: string, opts: Parameters<typeof runChecks>[2] = {}): Promise<CheckResult> => (await runChecks(opener, [parseCheck(url)], opts))[0]!;

  test('tcp open: ok with connect time, and the stream is closed afterwards', async () => {
    const r = await one('tcp://ssh.lan:22');
    expect(r).toMatchObject({ check: 'tcp://ssh.lan:22', kind: 'tcp', ok: true });
    expect(r.connectMs).toBeGreaterThanOrEqual(0);
    expect(r.totalMs).toBe(r.connectMs);
    expect(r.error).toBeUndefined();
    expect(opener.live.size).toBe(0);
  });

  test('tcp connect time is measured (a slow open shows up)', async () => {
    const r = await one('tcp://slow.lan:22');
    expect(r.ok).toBe(true);
    expect(r.connectMs).toBeGreaterThanOrEqual(70);
  });

  test.each([
    ['tcp://refused.lan:81', 'BRK_CONN_REFUSED', /connection refused/],
    ['tcp://denied.lan:22', 'BRK_POLICY_DENIED', /denied by rule/],
    ['tcp://gone.lan:22', 'BRK_HOST_UNREACHABLE', /unreachable/],
    ['http://refused.lan/', 'BRK_CONN_REFUSED', /connection refused/],
    ['https://denied.lan/', 'BRK_POLICY_DENIED', /denied/],
  ])('%s fails with %s and the device\'s reason', async (url, code, message) => {
    const r = await one(url);
    expect(r.ok).toBe(false);
    expect(r.error?.code).toBe(code);
    expect(r.error?.message).toMatch(message);
    expect(r.connectMs).toBeUndefined();
    expect(r.status).toBeUndefined();
  });

  test('tcp timeout: the open is aborted at the per-check timeout -> BRK_TIMEOUT', async () => {
    const t0 = Date.now();
    const r = await one('tcp://hang.lan:22', { timeoutMs: 200 });
    expect(r.ok).toBe(false);
    expect(r.error).toEqual({ code: 'BRK_TIMEOUT', message: 'no answer within 200 ms' });
    expect(r.totalMs).toBeGreaterThanOrEqual(190);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(opener.aborted).toBe(1);
  });

  test('http 200: status, bytes, ttfb', async () => {
    const r = await one(`http://web.lan:${80}/`);
    expect(r).toMatchObject({ kind: 'http', ok: true, status: 200, bytes: 1234 });
    expect(r.ttfbMs).toBeGreaterThanOrEqual(r.connectMs!);
    expect(r.totalMs).toBeGreaterThanOrEqual(r.ttfbMs!);
    expect(r.tls).toBeUndefined();
    expect(opener.opened).toEqual(['web.lan:80']);
  });

  test('http ttfb reflects a slow server', async () => {
    const r = await one('http://web.lan/slow');
    expect(r.ok).toBe(true);
    expect(r.ttfbMs! - r.connectMs!).toBeGreaterThanOrEqual(100);
    expect(r.bytes).toBe(4);
  });

  test('http 404: not ok, status and size still reported', async () => {
    const r = await one('http://web.lan/missing');
    expect(r).toMatchObject({ ok: false, status: 404, bytes: 'no such page\n'.length, error: { code: 'BRK_BAD_REQUEST', message: 'HTTP 404' } });
  });

  test('http server that never answers -> BRK_TIMEOUT, stream closed', async () => {
    const r = await one('http://silent.lan/', { timeoutMs: 250 });
    expect(r.ok).toBe(false);
    expect(r.error?.code).toBe('BRK_TIMEOUT');
    expect(r.connectMs).toBeUndefined();
    expect(opener.live.size).toBe(0);
  });

  test('https with a self-signed certificate fails by default with a TLS error', async () => {
    const r = await one('https://test.local/');
    expect(r.ok).toBe(false);
    expect(r.error?.code).toBe('BRK_BAD_REQUEST');
    expect(r.error?.message).toMatch(/^TLS: .*self[- ]signed/i);
    expect(r.error?.message).toMatch(/--insecure/);
    expect(opener.live.size).toBe(0);
  });

  test('https with insecure passes and reports the certificate', async () => {
    const r = await one('https://test.local/', { insecure: true });
    expect(r).toMatchObject({ kind: 'https', ok: true, status: 200, bytes: '<h1>secure</h1>'.length });
    expect(r.tls).toMatchObject({ subject: 'test.local', issuer: 'test.local', authorized: false });
    expect(r.tls!.authorizationError).toMatch(/SELF_SIGNED/);
    expect(r.tls!.daysLeft).toBeGreaterThanOrEqual(29);
    expect(r.tls!.daysLeft).toBeLessThanOrEqual(30);
    expect(Date.parse(r.tls!.validTo)).toBeGreaterThan(Date.now() + 29 * 86_400_000);
  });

  test('https to a plain-TCP server fails (no crash) within the timeout', async () => {
    const r = await one('https://silent.lan/', { timeoutMs: 300, insecure: true });
    expect(r.ok).toBe(false);
    expect(r.error?.code).toBe('BRK_TIMEOUT');
  });

  test('concurrency bound respected; results in input order; onResult called once per check', async () => {
    const urls = Array.from({ length: 12 }, (_, i) => (i % 4 === 3 ? 'tcp://refused.lan:1' : `tcp://slow.lan:${1000 + i}`));
    const progress: number[] = [];
    const results = await runChecks(opener, urls.map(parseCheck), { concurrency: 3, onResult: (_r, done, total) => { progress.push(done); expect(total).toBe(12); } });
    expect(results.map((r) => r.check)).toEqual(urls);
    expect(results.map((r) => r.ok)).toEqual(urls.map((u) => !u.includes('refused')));
    expect(opener.maxInUse).toBe(3);
    expect(progress).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(opener.live.size).toBe(0);
  });

  test('concurrency is clamped to at least 1', async () => {
    const results = await runChecks(opener, ['tcp://slow.lan:1', 'tcp://slow.lan:2'].map(parseCheck), { concurrency: 0 });
    expect(results.every((r) => r.ok)).toBe(true);
    expect(opener.maxInUse).toBe(1);
  });

  test('default concurrency runs checks in parallel (8 at once)', async () => {
    const t0 = Date.now();
    const results = await runChecks(opener, Array.from({ length: 8 }, (_, i) => parseCheck(`tcp://slow.lan:${i + 1}`)));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(opener.maxInUse).toBe(8);
    expect(Date.now() - t0).toBeLessThan(8 * 80);
  });

  test('no checks -> no results', async () => {
    expect(await runChecks(opener, [])).toEqual([]);
  });

  test('formatTable: one row per check, the detail, and a summary line', async () => {
    const results = await runChecks(opener, ['tcp://ssh.lan:22', 'tcp://refused.lan:81', 'http://web.lan/missing', 'https://test.local/'].map(parseCheck), { insecure: true });
    const table = formatTable(results);
    const lines = table.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CHECK\s+RESULT\s+STATUS\s+CONNECT\s+TTFB\s+SIZE\s+DETAIL$/);
    expect(lines[1]).toMatch(/^tcp:\/\/ssh\.lan:22\s+ok\s+\d/);
    expect(lines[2]).toMatch(/^tcp:\/\/refused\.lan:81\s+FAIL\s+BRK_CONN_REFUSED: refused\.lan:81: connection refused$/);
    expect(lines[3]).toMatch(/^http:\/\/web\.lan\/missing\s+FAIL\s+404/);
    expect(lines[4]).toMatch(/^https:\/\/test\.local\/\s+ok\s+200 .*cert test\.local by test\.local, (29|30) days left \(untrusted: DEPTH_ZERO_SELF_SIGNED_CERT\)$/);
    expect(lines[5]).toBe('2/4 checks passed');
  });
});

/**
 * `broker-agent join --fast-open`, end to end with real processes, curl and a raw
 * SOCKS5 client:
 * - a target the descriptor allows outright is answered 0x00 before the device has
 *   been asked, and the client's bytes written right after it arrive intact (upload,
 *   download, a client that half-closes at once);
 * - a target the descriptor denies is refused at once with the exact code and reason;
 * - a device-side failure after the early "succeeded" resets the client's connection
 *   (never a clean close), and `join` still prints the exact reason;
 * - a name the descriptor allows only if the device resolves it into an allowed range
 *   takes the exact path (inside network namespaces the test builds).
 */
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import {
  closedPort, createTopology, curl, curlSocks, curlSocksRep, sha256, socksConnect, startBroker, startExpose, startJoin, startTargets,
  targetLib, tempDir, until, type BrokerProc, type JoinProc, type Targets,
} from './harness';

/** How the client's connection ended after the reply: reset, clean close, or still open after `ms`. */
function howItEnds(socket: net.Socket, ms: number): Promise<{ how: 'reset' | 'closed' | 'open'; data: Buffer }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let reset = false;
    const t = setTimeout(() => resolve({ how: 'open', data: Buffer.concat(chunks) }), ms);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'ECONNRESET') reset = true; });
    socket.once('close', () => {
      clearTimeout(t);
      resolve({ how: reset ? 'reset' : 'closed', data: Buffer.concat(chunks) });
    });
  });
}

describe('fast open on loopback', () => {
  let targets: Targets;
  let broker: BrokerProc;
  let refusedPort: number;
  let fast: JoinProc;
  let exact: JoinProc;

  beforeAll(async () => {
    targets = await startTargets();
    refusedPort = await closedPort();
    broker = await startBroker();
    const expose = await startExpose(broker, [
      '--allow', `127.0.0.1:${targets.httpPort}`, '--allow', `127.0.0.1:${targets.halfClosePort}`, '--allow', `127.0.0.1:${refusedPort}`,
    ]);
    [fast, exact] = await Promise.all([startJoin(broker, expose.code, ['--fast-open']), startJoin(broker, expose.code)]);
  }, 60_000);

  test('join says it is on', () => {
    expect(fast.ready.fastOpen).toBe(true);
    expect(exact.ready.fastOpen).toBe(false);
  });

  test('curl through SOCKS and HTTP CONNECT: download, upload and their digests', async () => {
    const get = await curlSocks(fast.socks, `http://127.0.0.1:${targets.httpPort}/`);
    expect(get.code).toBe(0);
    expect(get.stdout.trim()).toBe(targets.marker);

    const bytes = 3 * 1024 * 1024;
    const blob = await curl(['--socks5-hostname', fast.socks, '-D', '-', '-o', '/dev/null', `http://127.0.0.1:${targets.httpPort}/blob?bytes=${bytes}&seed=fo`]);
    expect(blob.code).toBe(0);
    expect(blob.stdout).toContain(`x-sha256: ${targetLib.sha256(targetLib.blob(bytes, 'fo'))}`);

    const body = targetLib.blob(2 * 1024 * 1024, 'up');
    const file = path.join(tempDir('rab-fast-open-'), 'body');
    fs.writeFileSync(file, body);
    const up = await curl(['--socks5-hostname', fast.socks, '--data-binary', `@${file}`, `http://127.0.0.1:${targets.httpPort}/sha256`]);
    expect(up.code).toBe(0);
    expect(JSON.parse(up.stdout)).toEqual({ bytes: body.length, sha256: sha256(body) });

    const http = String(fast.ready.http);
    const viaConnect = await curl(['-p', '-x', `http://${http}`, `http://127.0.0.1:${targets.httpPort}/`]);
    expect(viaConnect.code).toBe(0);
    expect(viaConnect.stdout.trim()).toBe(targets.marker);

    // Plain requests through the HTTP proxy: two on one keep-alive upstream, then a body.
    const plain = await curl(['-x', `http://${http}`, `http://127.0.0.1:${targets.httpPort}/`, `http://127.0.0.1:${targets.httpPort}/`]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe(`${targets.marker}\n${targets.marker}\n`);
    const posted = await curl(['-x', `http://${http}`, '--data-binary', `@${file}`, `http://127.0.0.1:${targets.httpPort}/sha256`]);
    expect(posted.code).toBe(0);
    expect(JSON.parse(posted.stdout)).toEqual({ bytes: body.length, sha256: sha256(body) });

    // The broker's audit lines: this helper's streams all came the in-band way (channels
    // opened in advance), the other helper's as named direct-tcpip opens.
    // (Keep-alive upstreams are still open and audited later.)
    const helperId = (fast.ready.helper as { id: number }).id;
    const lines = () => broker.proc.lines.filter((l) => l.event === 'stream' && l.helper === helperId);
    await until(() => lines().length >= 4, 5000, 'the audit lines of the SOCKS and CONNECT streams');
    expect(new Set(lines().map((l) => l.via))).toEqual(new Set(['socks']));
  }, 60_000);

  test('the first bytes go out right behind the early reply, and a client that half-closes at once still gets its answer', async () => {
    const r = await socksConnect(fast.socks, '127.0.0.1', targets.halfClosePort);
    expect(r.rep).toBe(0);
    expect(r.bound).toEqual({ host: '0.0.0.0', port: 0 });
    const payload = targetLib.blob(300 * 1024, 'half');
    const end = howItEnds(r.socket, 15_000);
    r.socket.end(payload); // before the device can have answered
    const out = await end;
    expect(out.how).toBe('closed');
    expect(JSON.parse(out.data.toString())).toEqual({ bytes: payload.length, sha256: sha256(payload) });
    // Bytes sent before the device answered count too.
    const ev = await fast.proc.waitFor((l) => l.event === 'stream' && l.target === `127.0.0.1:${targets.halfClosePort}`, 5000, 'the stream event');
    expect(ev.sent).toBe(payload.length);
  });

  test('a port the descriptor denies is refused at once with the exact code and reason (0x02)', async () => {
    const other = await closedPort();
    const r = await socksConnect(fast.socks, '127.0.0.1', other);
    expect(r.rep).toBe(0x02);
    r.socket.destroy();
    const c = await curlSocks(fast.socks, `http://127.0.0.1:${other}/`);
    expect(c.code).toBe(97);
    expect(curlSocksRep(c)).toBe(2);
    const ev = await fast.proc.waitFor((l) => l.event === 'stream' && l.target === `127.0.0.1:${other}`, 5000, 'the stream event');
    // The same words the broker gives a helper without fast open.
    expect(await socksConnect(exact.socks, '127.0.0.1', other).then((x) => { x.socket.destroy(); return x.rep; })).toBe(0x02);
    const evExact = await exact.proc.waitFor((l) => l.event === 'stream' && l.target === `127.0.0.1:${other}`, 5000, 'the stream event');
    expect(ev.reason).toBe(evExact.reason);
    expect(ev.reset).toBeUndefined();
    const plain = await curl(['-sS', '-D', '-', '-x', `http://${String(fast.ready.http)}`, `http://127.0.0.1:${other}/`]);
    expect(plain.stdout).toMatch(/^HTTP\/1\.1 403 /);
    expect(plain.stdout).toMatch(/x-broker-error: BRK_POLICY_DENIED/i);
    expect(String(ev.reason)).toMatch(/is loopback; name it explicitly/);
  });

  test('an allowed port with nothing listening: 0x00, then a reset (not a clean close), and join prints why', async () => {
    const r = await socksConnect(fast.socks, '127.0.0.1', refusedPort);
    expect(r.rep).toBe(0x00);
    r.socket.write('GET / HTTP/1.0\r\n\r\n');
    const out = await howItEnds(r.socket, 10_000);
    expect(out.how).toBe('reset');
    expect(out.data.length).toBe(0);
    const ev = await fast.proc.waitFor((l) => l.event === 'stream' && l.target === `127.0.0.1:${refusedPort}`, 5000, 'the stream event');
    expect(ev.rep).toBe(5);
    expect(String(ev.reason)).toMatch(/refused/);
    expect(ev.reset).toBe(true);

    const c = await curlSocks(fast.socks, `http://127.0.0.1:${refusedPort}/`);
    expect(c.code).not.toBe(0);
    expect(c.stderr).toMatch(/reset|Recv failure/i);
    const viaConnect = await curl(['-p', '-x', `http://${String(fast.ready.http)}`, `http://127.0.0.1:${refusedPort}/`]);
    expect(viaConnect.code).not.toBe(0);
    const httpEv = await fast.proc.waitFor((l) => l.event === 'http-stream' && l.target === `127.0.0.1:${refusedPort}` && l.status !== 200, 5000, 'the CONNECT event');
    expect(httpEv.status).toBe(502);
    expect(httpEv.code).toBe('BRK_CONN_REFUSED');
    expect(httpEv.reset).toBe(true);

    // A plain request through the HTTP proxy had no early answer: its error stays exact.
    const plain = await curl(['-sS', '-D', '-', '-x', `http://${String(fast.ready.http)}`, `http://127.0.0.1:${refusedPort}/`]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^HTTP\/1\.1 502 /);
    expect(plain.stdout).toMatch(/x-broker-error: BRK_CONN_REFUSED/i);
    expect(plain.stdout).toMatch(/refused/);
    // All four went the fast way (raw SOCKS, curl, CONNECT, the plain request): the broker
    // refused them on the in-band path.
    const helperId = (fast.ready.helper as { id: number }).id;
    const refusals = () => broker.proc.lines.filter((l) => l.event === 'stream' && l.helper === helperId && l.dest === `127.0.0.1:${refusedPort}`);
    await until(() => refusals().length >= 4, 5000, 'four refusal audit lines');
    expect(refusals().map((l) => l.via)).toEqual(['socks', 'socks', 'socks', 'socks']);
  });
});

describe('fast open inside network namespaces (names the device resolves, device network errors)', () => {
  let join: JoinProc;

  beforeAll(async () => {
    const topo = await createTopology({ hosts: ['127.0.0.1 rebind.lan'] });
    const broker = await startBroker({ host: topo.rootAddr });
    const expose = await startExpose(broker, ['--allow', '198.18.0.0/24:8080', '--allow', '198.19.0.0/16:8080', '--allow', 'rebind.lan:8080'], { netns: topo.dev });
    join = await startJoin(broker, expose.code, ['--fast-open']);
  }, 60_000);

  test('a name allowed only by an address range waits for the device: the exact 0x04', async () => {
    const r = await socksConnect(join.socks, 'nosuchhost.lan', 8080);
    expect(r.rep).toBe(0x04);
    r.socket.destroy();
  });

  test('a name allowed by name that the device refuses after its DNS (loopback): 0x00, reset, the reason printed', async () => {
    const r = await socksConnect(join.socks, 'rebind.lan', 8080);
    expect(r.rep).toBe(0x00);
    const out = await howItEnds(r.socket, 10_000);
    expect(out.how).toBe('reset');
    const ev = await join.proc.waitFor((l) => l.event === 'stream' && l.target === 'rebind.lan:8080', 5000, 'the stream event');
    expect(ev.rep).toBe(2);
    expect(String(ev.reason)).toMatch(/loopback/);
  });

  test('no route on the device: 0x00, reset, and the exact code in the event (0x03)', async () => {
    const r = await socksConnect(join.socks, '198.19.0.1', 8080);
    expect(r.rep).toBe(0x00);
    expect((await howItEnds(r.socket, 10_000)).how).toBe('reset');
    const ev = await join.proc.waitFor((l) => l.event === 'stream' && l.target === '198.19.0.1:8080', 5000, 'the stream event');
    expect(ev.rep).toBe(3);
  });
});

/**
 * A real browser through the helper: headless Chromium (Debian's /usr/bin/chromium via
 * playwright-core) loads a page with CSS, an image and an XHR from a server on the
 * "device network", once through the helper's SOCKS5 port and once through its HTTP
 * proxy port, started the way examples/browser.md says; then both again with
 * `join --fast-open`.
 *
 * Chromium never proxies loopback destinations unless `--proxy-bypass-list=<-loopback>`,
 * so the test proves the page really came through the proxy: (1) it renders completely
 * (CSS applied, image decoded, XHR text in the DOM); (2) every response's remote address
 * (`response.serverAddr()`) is the helper proxy's address and port, and the device
 * reported streams to the page server; (3) once the helper is stopped the page no longer
 * loads (Chromium never falls back to a direct connection).
 *
 * NETWORK RULE: the page server is on 127.0.0.1; the flags below stop background
 * traffic, local DNS is disabled, and anything else would have to pass the device's
 * policy, which only allows the page server.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { chromium, type Browser, type Response } from 'playwright-core';
import {
  REPO, Scope, deviceStreams, startBroker, startExpose, startHttpTarget, startJoin, tempDir, until,
  type BrokerInfo, type ExposeInfo, type JoinInfo,
} from './tools-harness';

jest.setTimeout(60_000);

const CHROMIUM = '/usr/bin/chromium';

/** The flags examples/browser.md tells people to use, read from the file so the doc cannot drift. */
function flagsFromBrowserDoc(): { hostResolverRules: string; bypass: string } {
  const doc = fs.readFileSync(path.join(REPO, 'examples', 'browser.md'), 'utf8');
  const rules = /--host-resolver-rules="([^"]+)"/.exec(doc)?.[1];
  const bypass = /--proxy-bypass-list="([^"]+)"/.exec(doc)?.[1];
  if (!rules || !bypass) throw new Error('examples/browser.md no longer shows --host-resolver-rules and --proxy-bypass-list');
  return { hostResolverRules: rules, bypass };
}

/** A real PNG (w x h, solid colour), so the browser has something to decode. */
function png(w: number, h: number, rgb: [number, number, number]): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(w * 3).map((_, i) => rgb[i % 3]!)]);
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

describe('headless Chromium through the helper', () => {
  const file = new Scope();
  const token = `device-only-${randomBytes(6).toString('hex')}`;
  const image = png(16, 8, [200, 30, 60]);
  let dir: string;
  let kb: string;
  let broker: BrokerInfo;
  let expose: ExposeInfo;
  let site: Awaited<ReturnType<typeof startHttpTarget>>;
  let origin: string;

  const page = (title: string) => `<!doctype html>
<html><head><meta charset="utf-8"><title>${title}</title><link rel="stylesheet" href="/style.css"><link rel="icon" href="data:,"></head>
<body><h1 id="styled">styled by the device's CSS</h1>
<img id="img" src="/pixel.png" alt="from the device">
<p id="xhr">waiting for XHR</p>
<script>
  const x = new XMLHttpRequest();
  x.open('GET', '/api/data');
  x.onload = () => { document.getElementById('xhr').textContent = x.status + ' ' + x.responseText; };
  x.onerror = () => { document.getElementById('xhr').textContent = 'XHR failed'; };
  x.send();
</script></body></html>`;

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (CI's .ci/run installs it)`);
    dir = tempDir();
    file.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
    site = await startHttpTarget(file, token, (req: http.IncomingMessage, res: http.ServerResponse) => {
      const send = (type: string, body: string | Buffer, status = 200) => {
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
        res.end(body);
      };
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/') return send('text/html; charset=utf-8', page(token));
      if (url.pathname === '/style.css') return send('text/css', '#styled { color: rgb(10, 20, 30); } body { background-color: rgb(250, 240, 230); }');
      if (url.pathname === '/pixel.png') return send('image/png', image);
      if (url.pathname === '/api/data') return send('text/plain', `xhr-${token}`);
      return send('text/plain', 'not found', 404);
    });
    origin = `http://127.0.0.1:${site.port}`;
    broker = await startBroker(file, dir);
    kb = path.join(dir, 'known_brokers');
    expose = await startExpose(file, broker, kb, [`127.0.0.1:${site.port}`]);
  }, 60_000);

  afterAll(async () => {
    await file.cleanup();
  }, 30_000);

  async function launch(proxyServer: string): Promise<Browser> {
    const { hostResolverRules, bypass } = flagsFromBrowserDoc();
    expect(bypass).toBe('<-loopback>');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30_000,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
        '--disable-component-update', '--no-first-run', '--disable-sync',
        `--proxy-server=${proxyServer}`, `--proxy-bypass-list=${bypass}`, `--host-resolver-rules=${hostResolverRules}`,
        // Debian's /usr/bin/chromium wrapper adds Google API keys and extension updates; even with the
        // flags above Chromium then asks the proxy for update.googleapis.com and accounts.google.com.
        // Point the component updater and the Google-account endpoint at a dead loopback port instead.
        '--component-updater=url-source=http://127.0.0.1:9/', '--gaia-url=http://127.0.0.1:9/',
      ],
    });
    return browser;
  }

  for (const [mode, fastOpen] of [['socks5', false], ['http', false], ['socks5', true], ['http', true]] as const) {
    test(`page with CSS, image and XHR renders through the ${mode === 'socks5' ? 'SOCKS5' : 'HTTP'} proxy${fastOpen ? ' with join --fast-open' : ''}; fails once the helper is gone`, async () => {
      const scope = new Scope();
      let browser: Browser | undefined;
      try {
        const join: JoinInfo = await startJoin(scope, broker, expose.code, kb, fastOpen ? ['--fast-open'] : []);
        expect(join.ready.fastOpen).toBe(fastOpen);
        const proxyPort = mode === 'socks5' ? join.socksPort : join.httpPort;
        const streamsBefore = deviceStreams(expose, `127.0.0.1:${site.port}`).length;
        const requestsBefore = site.requests.length;
        browser = await launch(`${mode}://127.0.0.1:${proxyPort}`);
        const ctx = await browser.newContext();
        const tab = await ctx.newPage();
        const responses: Response[] = [];
        tab.on('response', (r) => responses.push(r));

        const main = await tab.goto(`${origin}/?via=${mode}`, { waitUntil: 'load', timeout: 20_000 });
        expect(main?.status()).toBe(200);
        // page-side code is passed as strings: this project compiles without the DOM lib
        await tab.waitForFunction("document.getElementById('xhr').textContent !== 'waiting for XHR'", undefined, { timeout: 10_000 });

        // (1) rendered completely
        expect(await tab.title()).toBe(token);
        expect(await tab.textContent('#xhr')).toBe(`200 xhr-${token}`);
        expect(await tab.evaluate("getComputedStyle(document.getElementById('styled')).color")).toBe('rgb(10, 20, 30)');
        expect(await tab.evaluate('getComputedStyle(document.body).backgroundColor')).toBe('rgb(250, 240, 230)');
        const img = await tab.evaluate("(() => { const i = document.getElementById('img'); return { complete: i.complete, w: i.naturalWidth, h: i.naturalHeight }; })()");
        expect(img).toEqual({ complete: true, w: 16, h: 8 });

        // (2) every response came from the proxy's socket, and the device opened streams to the page server
        const paths = responses.map((r) => new URL(r.url()).pathname).sort();
        expect(paths).toEqual(['/', '/api/data', '/pixel.png', '/style.css']);
        for (const r of responses) {
          expect(await r.serverAddr()).toEqual({ ipAddress: '127.0.0.1', port: proxyPort });
          expect(r.status()).toBe(200);
        }
        expect(site.requests.slice(requestsBefore).map((q) => q.replace(/\?.*$/, '')).sort()).toEqual(['GET /', 'GET /api/data', 'GET /pixel.png', 'GET /style.css']);
        await until(() => deviceStreams(expose, `127.0.0.1:${site.port}`).length > streamsBefore, 'the device to report streams to the page server');
        if (mode === 'http') {
          await join.proc.waitLine((l) => l.event === 'http-stream' && l.target === `127.0.0.1:${site.port}` && l.method === 'GET' && l.status === 200, 'http-stream event from the HTTP proxy');
        }
        await ctx.close();

        // (3) stop the helper: the same page no longer loads
        await join.proc.stop();
        if (fastOpen) {
          // The streams came the fast way: on channels opened in advance, in-band at the broker
          // (audited once closed; the HTTP proxy's keep-alive upstreams close with the helper).
          const helperId = (join.ready.helper as { id: number }).id;
          const vias = () => broker.proc.lines.filter((l) => l.event === 'stream' && l.helper === helperId).map((l) => l.via);
          await until(() => vias().length > 0, 'the broker audit lines of this helper');
          expect(new Set(vias())).toEqual(new Set(['socks']));
        }
        const ctx2 = await browser.newContext();
        const tab2 = await ctx2.newPage();
        const requestsAfterStop = site.requests.length;
        await expect(tab2.goto(`${origin}/?after-stop=${mode}`, { timeout: 15_000 })).rejects.toThrow(/net::ERR_(PROXY_CONNECTION_FAILED|SOCKS_CONNECTION_FAILED|TUNNEL_CONNECTION_FAILED|CONNECTION_REFUSED)/);
        expect(site.requests.length).toBe(requestsAfterStop);
        await ctx2.close();
      } finally {
        await browser?.close();
        await scope.cleanup();
      }
    });
  }

  test('Chromium asked for nothing but the page server (no background traffic, no DNS on the device)', async () => {
    await until(() => broker.proc.lines.some((l) => l.event === 'stream'), 'the broker audit lines');
    const deviceTargets = new Set(expose.proc.lines.filter((l) => l.event === 'stream-opened').map((l) => l.target));
    const brokerDests = new Set(broker.proc.lines.filter((l) => l.event === 'stream').map((l) => l.dest));
    expect([...deviceTargets]).toEqual([`127.0.0.1:${site.port}`]);
    expect([...brokerDests]).toEqual([`127.0.0.1:${site.port}`]);
  });
});

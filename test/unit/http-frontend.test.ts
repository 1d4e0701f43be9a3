/**
 * The helper's HTTP proxy front-end over a fake StreamOpener (no SSH): absolute-form
 * requests through http-proxy with keep-alive reuse, CONNECT tunnels, the honest
 * error statuses (403/502/504 + X-Broker-Error + one-line body), RFC 9110 hop-by-hop
 * handling both ways, size limits (431/413), malformed input (400) and no leaks.
 */
import http from 'node:http';
import net from 'node:net';
import { BrokerError, type BrokerErrorCode } from '../../src/errors';
import { HttpFrontend, type HttpFrontendEvents } from '../../src/helper/http-frontend';
import { FakeOpener, closeServer, listen, waitFor, type Route } from './fake-opener';

interface Head { status: number; headers: Record<string, string>; raw: string; rest: Buffer }

/** Read a response head from a raw socket; any bytes after it are returned in `rest`. */
function readHead(sock: net.Socket, timeoutMs = 3000): Promise<Head> {
  return new Promise((resolve, reject) => {
    let acc = Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error(`no response head within ${timeoutMs} ms (got ${JSON.stringify(acc.toString())})`)), timeoutMs);
    const onData = (c: Buffer) => {
      acc = Buffer.concat([acc, c]);
      const end = acc.indexOf('\r\n\r\n');
      if (end < 0) return;
      const raw = acc.subarray(0, end).toString('latin1');
      const [line, ...lines] = raw.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(line ?? '')?.[1]);
      done(undefined, { status, headers, raw, rest: acc.subarray(end + 4) });
    };
    const onEnd = () => done(new Error(`connection closed before a response head (got ${JSON.stringify(acc.toString())})`));
    const done = (err?: Error, head?: Head) => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('close', onEnd);
      sock.pause();
      if (err) reject(err);
      else resolve(head!);
    };
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('close', onEnd);
  });
}

/** Read until the peer closes (bounded). */
function readAll(sock: net.Socket, initial: Buffer = Buffer.alloc(0), timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [initial];
    const timer = setTimeout(() => reject(new Error('peer did not close in time')), timeoutMs);
    sock.on('data', (c: Buffer) => parts.push(c));
    sock.once('close', () => { clearTimeout(timer); resolve(Buffer.concat(parts)); });
    sock.resume();
  });
}

async function rawConnect(port: number): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
  s.on('error', () => {});
  return s;
}

/** Read exactly `n` bytes (bounded). */
function readN(sock: net.Socket, n: number, initial: Buffer, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let acc = initial;
    const finish = () => { clearTimeout(timer); sock.off('data', onData); sock.pause(); resolve(acc.subarray(0, n)); };
    const onData = (c: Buffer) => { acc = Buffer.concat([acc, c]); if (acc.length >= n) finish(); };
    const timer = setTimeout(() => reject(new Error(`got ${acc.length} of ${n} body bytes`)), timeoutMs);
    if (acc.length >= n) return finish();
    sock.on('data', onData);
    sock.resume();
  });
}

/**
 * Send raw bytes and read one response: the body by Content-Length; error answers
 * (Connection: close) must also be followed by the server closing the connection.
 */
async function rawExchange(port: number, data: string | Buffer): Promise<Head & { body: string }> {
  const s = await rawConnect(port);
  try {
    s.write(data);
    const head = await readHead(s);
    let body: Buffer;
    if (head.headers.connection === 'close' || head.headers['content-length'] === undefined) {
      body = await readAll(s, head.rest);
      if (head.headers['content-length'] !== undefined) expect(body.length).toBe(Number(head.headers['content-length']));
    } else {
      body = await readN(s, Number(head.headers['content-length']), head.rest);
    }
    return { ...head, body: body.toString('utf8') };
  } finally {
    s.destroy();
  }
}

const ERRORS: Array<[BrokerErrorCode, number]> = [
  ['BRK_POLICY_DENIED', 403],
  ['BRK_CONN_REFUSED', 502],
  ['BRK_HOST_UNREACHABLE', 502],
  ['BRK_NET_UNREACHABLE', 502],
  ['BRK_TIMEOUT', 504],
];

describe('HttpFrontend over a fake opener', () => {
  let target: http.Server;
  let targetPort: number;
  let targetConnections: number;
  let targetSockets: Set<net.Socket>;
  let seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: string }>;
  let echo: net.Server;
  let echoPort: number;
  let echoSockets: Set<net.Socket>;
  let opener: FakeOpener;
  let fe: HttpFrontend;
  let fePort: number;
  let events: Array<HttpFrontendEvents['stream'][0]>;

  const route = (t: { host: string; port: number }): Route => {
    if (t.host === 'device.lan' && t.port === 80) return { port: targetPort };
    if (t.host === 'echo.lan' && t.port === 7) return { port: echoPort };
    if (t.host === 'hang.lan') return { hang: true };
    if (t.host === 'slow.lan') return { port: echoPort, delayMs: 300 };
    const code = /^err-(brk_[a-z_]+)\.lan$/.exec(t.host)?.[1]?.toUpperCase() as BrokerErrorCode | undefined;
    if (code) return { error: new BrokerError(code, `${t.host}:${t.port}: simulated ${code} on the device`) };
    return { error: new BrokerError('BRK_HOST_UNREACHABLE', `${t.host}: no route in the fake`) };
  };

  async function startFrontend(opts: ConstructorParameters<typeof HttpFrontend>[2] = {}): Promise<void> {
    fe = new HttpFrontend(opener, undefined, opts);
    const mine: typeof events = [];
    events = mine;
    fe.on('stream', (e) => mine.push(e));
    await fe.start('127.0.0.1', 0);
    fePort = fe.address().port;
  }

  beforeEach(async () => {
    seen = [];
    targetConnections = 0;
    targetSockets = new Set();
    target = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => { body += c; });
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        if (req.url === '/hop') {
          res.setHeader('Connection', 'X-Resp-Hop');
          res.setHeader('X-Resp-Hop', 'secret');
          res.setHeader('Keep-Alive', 'timeout=99, max=7');
          res.setHeader('Proxy-Authenticate', 'Basic realm="x"');
          res.setHeader('Upgrade', 'h2c');
          res.setHeader('X-End-To-End', 'kept');
        }
        const text = `you asked ${req.method} ${req.url}${body ? ` with ${body.length} bytes` : ''}\n`;
        res.setHeader('Content-Type', 'text/plain');
        res.setHeader('Content-Length', Buffer.byteLength(text));
        res.end(text);
      });
    });
    target.on('connection', (s: net.Socket) => { targetConnections++; targetSockets.add(s); s.once('close', () => targetSockets.delete(s)); });
    targetPort = await listen(target);

    echoSockets = new Set();
    echo = net.createServer((s) => {
      echoSockets.add(s);
      s.once('close', () => echoSockets.delete(s));
      s.on('error', () => {});
      s.write('hello from the device\n');
      s.on('data', (c: Buffer) => s.write(c.toString('utf8').toUpperCase()));
      s.on('end', () => s.end('bye\n'));
    });
    echoPort = await listen(echo);

    opener = new FakeOpener(route);
    await startFrontend();
  });

  afterEach(async () => {
    await fe.close();
    await closeServer(target, targetSockets);
    await closeServer(echo, echoSockets);
  });

  function get(path: string, opts: { agent?: http.Agent; headers?: http.OutgoingHttpHeaders; method?: string; body?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: fePort, method: opts.method ?? 'GET', path, agent: opts.agent ?? false, headers: opts.headers });
      req.once('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { body += c; });
        res.once('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      });
      req.once('error', reject);
      req.end(opts.body);
    });
  }

  test('absolute-form GET goes through the opener to the target, Host and path intact', async () => {
    const r = await get('http://device.lan/some/page?x=1', { headers: { host: 'device.lan' } });
    expect(r.status).toBe(200);
    expect(r.body).toBe('you asked GET /some/page?x=1\n');
    expect(opener.opened).toEqual(['device.lan:80']);
    expect(seen[0]!.url).toBe('/some/page?x=1');
    expect(seen[0]!.headers.host).toBe('device.lan');
    await waitFor(() => events.length > 0, 'http stream event');
    expect(events[0]).toMatchObject({ target: 'device.lan:80', method: 'GET', status: 200 });
  });

  test('POST body is forwarded', async () => {
    const r = await get('http://device.lan/form', { method: 'POST', body: 'a=1&b=2', headers: { host: 'device.lan', 'content-type': 'application/x-www-form-urlencoded' } });
    expect(r.status).toBe(200);
    expect(r.body).toBe('you asked POST /form with 7 bytes\n');
    expect(seen[0]!.body).toBe('a=1&b=2');
  });

  test('keep-alive: 10 sequential requests on one client connection use ONE upstream stream', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 10; i++) {
        const r = await get(`http://device.lan/asset/${i}.css`, { agent, headers: { host: 'device.lan' } });
        expect(r.status).toBe(200);
        expect(r.body).toBe(`you asked GET /asset/${i}.css\n`);
      }
    } finally {
      agent.destroy();
    }
    expect(opener.opened).toEqual(['device.lan:80']);
    expect(targetConnections).toBe(1);
  });

  test('keep-alive: separate client connections still share the pooled upstream stream', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await get(`http://device.lan/img/${i}.png`, { headers: { host: 'device.lan' } }); // agent: false = new client connection each time
      expect(r.status).toBe(200);
    }
    expect(opener.opened).toHaveLength(1);
    expect(targetConnections).toBe(1);
  });

  test('upstream closes an idle pooled connection: the next request opens a new stream and succeeds', async () => {
    target.keepAliveTimeout = 100;
    const r1 = await get('http://device.lan/first', { headers: { host: 'device.lan' } });
    expect(r1.status).toBe(200);
    await waitFor(() => targetSockets.size === 0, 'the target to close the idle connection');
    await waitFor(() => opener.live.size === 0, 'the pooled stream to be dropped');
    const r2 = await get('http://device.lan/second', { headers: { host: 'device.lan' } });
    expect(r2.status).toBe(200);
    expect(r2.body).toBe('you asked GET /second\n');
    expect(opener.opened).toHaveLength(2);
  });

  test('concurrent requests open a bounded number of streams and all succeed', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    try {
      const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => get(`http://device.lan/p/${i}`, { agent, headers: { host: 'device.lan' } })));
      expect(rs.every((r) => r.status === 200)).toBe(true);
    } finally {
      agent.destroy();
    }
    expect(opener.opened.length).toBeGreaterThanOrEqual(1);
    expect(opener.opened.length).toBeLessThanOrEqual(4);
  });

  test('close() drops pooled upstream streams: nothing left open', async () => {
    await get('http://device.lan/', { headers: { host: 'device.lan' } });
    expect(opener.live.size).toBe(1); // pooled for reuse
    await fe.close();
    await waitFor(() => opener.live.size === 0, 'pooled stream to close');
    await waitFor(() => targetSockets.size === 0, 'target connection to close');
  });

  test('CONNECT: 200, then bytes both ways (including bytes sent with the request head)', async () => {
    const s = await rawConnect(fePort);
    s.write('CONNECT echo.lan:7 HTTP/1.1\r\nHost: echo.lan:7\r\n\r\nearly ');
    const head = await readHead(s);
    expect(head.status).toBe(200);
    expect(head.raw).toMatch(/^HTTP\/1\.1 200 Connection Established/);
    s.write('bird\n');
    s.end();
    const all = Buffer.concat([head.rest, await readAll(s)]).toString();
    expect(all).toBe('hello from the device\nEARLY BIRD\nbye\n');
    expect(opener.opened).toEqual(['echo.lan:7']);
    await waitFor(() => opener.live.size === 0, 'tunnel stream to close');
    expect(events).toContainEqual({ target: 'echo.lan:7', method: 'CONNECT', status: 200 });
  });

  test.each(['echo.lan:0', 'echo.lan:99999', 'echo.lan:abc', 'echo.lan', ':80', 'bad_host!:80'])('CONNECT %s -> 400 BRK_BAD_TARGET, opener never called', async (authority) => {
    const r = await rawExchange(fePort, `CONNECT ${authority} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(r.status).toBe(400);
    expect(r.headers['x-broker-error']).toBe('BRK_BAD_TARGET');
    expect(r.body).toMatch(/^[^\n]+\n$/);
    expect(opener.opened).toEqual([]);
  });

  describe.each(ERRORS)('opener fails with %s', (code, status) => {
    const host = `err-${code.toLowerCase()}.lan`;

    test(`GET -> ${status}, X-Broker-Error, one-line reason`, async () => {
      const r = await get(`http://${host}/`, { headers: { host } });
      expect(r.status).toBe(status);
      expect(r.headers['x-broker-error']).toBe(code);
      expect(r.headers['content-type']).toMatch(/^text\/plain/);
      expect(r.body).toBe(`${host}:80: simulated ${code} on the device\n`);
      expect(opener.live.size).toBe(0);
      // exactly one http-stream event, naming the destination and the code
      await new Promise((res) => setTimeout(res, 20));
      expect(events).toEqual([{ target: `${host}:80`, method: 'GET', status, code, reason: `${host}:80: simulated ${code} on the device` }]);
    });

    test(`CONNECT -> ${status}, X-Broker-Error, one-line reason`, async () => {
      const r = await rawExchange(fePort, `CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`);
      expect(r.status).toBe(status);
      expect(r.headers['x-broker-error']).toBe(code);
      expect(r.body).toBe(`${host}:443: simulated ${code} on the device\n`);
      await waitFor(() => events.some((e) => e.code === code), 'error event');
      expect(events.find((e) => e.code === code)).toMatchObject({ target: `${host}:443`, method: 'CONNECT', status });
    });
  });

  test('a one-line body even when the reason contains newlines', async () => {
    const r = await rawExchange(fePort, 'CONNECT err-brk_policy_denied.lan:22 HTTP/1.1\r\n\r\n');
    expect(r.body.split('\n')).toHaveLength(2);
    const opener2 = new FakeOpener(() => ({ error: new BrokerError('BRK_CONN_REFUSED', 'line one\nline two\r\nline three') }));
    const fe2 = new HttpFrontend(opener2);
    await fe2.start('127.0.0.1', 0);
    try {
      const c = await rawExchange(fe2.address().port, 'CONNECT x.lan:22 HTTP/1.1\r\n\r\n');
      expect(c.status).toBe(502);
      expect(c.body).toBe('line one line two line three\n');
      const g = await rawExchange(fe2.address().port, 'GET http://x.lan/ HTTP/1.1\r\nHost: x.lan\r\n\r\n');
      expect(g.status).toBe(502);
      expect(g.headers['x-broker-error']).toBe('BRK_CONN_REFUSED');
      expect(g.body).toBe('line one line two line three\n');
    } finally {
      await fe2.close();
    }
  });

  test('request hop-by-hop headers are not forwarded (Connection-listed, Proxy-Authorization, Keep-Alive, TE, Proxy-Connection)', async () => {
    const r = await rawExchange(fePort, [
      'GET http://device.lan/req-hop HTTP/1.1',
      'Host: device.lan',
      'Connection: close, X-Secret-Hop',
      'X-Secret-Hop: do-not-forward',
      'Proxy-Authorization: Basic dXNlcjpwYXNz',
      'Proxy-Connection: keep-alive',
      'Keep-Alive: timeout=99',
      'TE: trailers',
      'X-End-To-End: forwarded',
      '', ''].join('\r\n'));
    expect(r.status).toBe(200);
    const h = seen[0]!.headers;
    expect(h['x-end-to-end']).toBe('forwarded');
    expect(h['x-secret-hop']).toBeUndefined();
    expect(h['proxy-authorization']).toBeUndefined();
    expect(h['proxy-connection']).toBeUndefined();
    expect(h['keep-alive']).toBeUndefined();
    expect(h.te).toBeUndefined();
    expect(String(h.connection ?? '')).not.toMatch(/x-secret-hop|close/i);
  });

  test('request Upgrade header is not forwarded (no WebSocket pass-through)', async () => {
    const r = await rawExchange(fePort, [
      'GET http://device.lan/up HTTP/1.1',
      'Host: device.lan',
      'Connection: Upgrade',
      'Upgrade: websocket',
      '', ''].join('\r\n'));
    expect(r.status).toBe(200);
    expect(seen[0]!.headers.upgrade).toBeUndefined();
    expect(String(seen[0]!.headers.connection ?? '')).not.toMatch(/upgrade/i);
  });

  test('response hop-by-hop headers are not passed back (Connection-listed, Keep-Alive, Proxy-Authenticate, Upgrade)', async () => {
    const r = await get('http://device.lan/hop', { headers: { host: 'device.lan' } });
    expect(r.status).toBe(200);
    expect(r.headers['x-end-to-end']).toBe('kept');
    expect(r.headers['x-resp-hop']).toBeUndefined();
    expect(r.headers['proxy-authenticate']).toBeUndefined();
    expect(r.headers.upgrade).toBeUndefined();
    expect(String(r.headers['keep-alive'] ?? '')).not.toMatch(/max=7|timeout=99/);
    expect(String(r.headers.connection ?? '')).not.toMatch(/x-resp-hop/i);
  });

  test('oversized request head -> 431 with X-Broker-Error, opener never called', async () => {
    await fe.close();
    await startFrontend({ maxHeaderBytes: 2048 });
    const r = await rawExchange(fePort, `GET http://device.lan/ HTTP/1.1\r\nHost: device.lan\r\nX-Big: ${'a'.repeat(8192)}\r\n\r\n`);
    expect(r.status).toBe(431);
    expect(r.headers['x-broker-error']).toBe('BRK_BAD_REQUEST');
    expect(r.body).toMatch(/^[^\n]+\n$/);
    expect(opener.opened).toEqual([]);
  });

  test('oversized CONNECT head -> 431', async () => {
    await fe.close();
    await startFrontend({ maxHeaderBytes: 2048 });
    const r = await rawExchange(fePort, `CONNECT echo.lan:7 HTTP/1.1\r\nX-Big: ${'a'.repeat(8192)}\r\n\r\n`);
    expect(r.status).toBe(431);
    expect(opener.opened).toEqual([]);
  });

  test('Content-Length over maxBodyBytes -> 413 before anything is opened', async () => {
    await fe.close();
    await startFrontend({ maxBodyBytes: 1024 });
    const r = await rawExchange(fePort, 'POST http://device.lan/upload HTTP/1.1\r\nHost: device.lan\r\nContent-Length: 5000\r\n\r\n');
    expect(r.status).toBe(413);
    expect(r.headers['x-broker-error']).toBe('BRK_BAD_REQUEST');
    expect(r.body).toMatch(/5000 bytes.*1024-byte limit\n$/);
    expect(opener.opened).toEqual([]);
  });

  test('a body at the limit passes', async () => {
    await fe.close();
    await startFrontend({ maxBodyBytes: 1024 });
    const r = await get('http://device.lan/upload', { method: 'POST', body: 'x'.repeat(1024), headers: { host: 'device.lan' } });
    expect(r.status).toBe(200);
    expect(seen[0]!.body).toHaveLength(1024);
  });

  test('chunked body that grows over maxBodyBytes -> 413', async () => {
    await fe.close();
    await startFrontend({ maxBodyBytes: 1024 });
    const s = await rawConnect(fePort);
    s.write('POST http://device.lan/upload HTTP/1.1\r\nHost: device.lan\r\nTransfer-Encoding: chunked\r\n\r\n');
    const chunk = `400\r\n${'y'.repeat(1024)}\r\n`;
    s.write(chunk);
    s.write(chunk);
    const head = await readHead(s);
    expect(head.status).toBe(413);
    expect(head.headers['x-broker-error']).toBe('BRK_BAD_REQUEST');
    s.destroy();
  });

  test.each([
    ['garbage request line', 'THIS IS NOT HTTP\r\n\r\n'],
    ['bad method characters', 'G@T http://device.lan/ HTTP/1.1\r\n\r\n'],
    ['bad version', 'GET http://device.lan/ HTTP/9.9x\r\n\r\n'],
    ['header without colon', 'GET http://device.lan/ HTTP/1.1\r\nHost device.lan\r\n\r\n'],
  ])('malformed request (%s) -> 400', async (_name, data) => {
    const r = await rawExchange(fePort, data);
    expect(r.status).toBe(400);
    expect(r.headers['x-broker-error']).toBe('BRK_BAD_REQUEST');
    expect(r.body).toMatch(/^malformed HTTP request[^\n]*\n$/);
    expect(opener.opened).toEqual([]);
  });

  test('origin-form request (not configured as a proxy) -> 400 with a hint', async () => {
    const r = await rawExchange(fePort, 'GET /index.html HTTP/1.1\r\nHost: device.lan\r\n\r\n');
    expect(r.status).toBe(400);
    expect(r.headers['x-broker-error']).toBe('BRK_BAD_REQUEST');
    expect(r.body).toMatch(/not an absolute URL.*curl -x/);
    expect(opener.opened).toEqual([]);
  });

  test('absolute-form https:// (should be CONNECT) -> 405 BRK_UNSUPPORTED', async () => {
    const r = await rawExchange(fePort, 'GET https://device.lan/ HTTP/1.1\r\nHost: device.lan\r\n\r\n');
    expect(r.status).toBe(405);
    expect(r.headers['x-broker-error']).toBe('BRK_UNSUPPORTED');
    expect(opener.opened).toEqual([]);
  });

  test('absolute-form with a bad port -> 400', async () => {
    const r = await rawExchange(fePort, 'GET http://device.lan:0/ HTTP/1.1\r\nHost: device.lan\r\n\r\n');
    expect(r.status).toBe(400);
    expect(opener.opened).toEqual([]);
  });

  test('CONNECT then silence: no crash; closing the client closes the tunnel stream; nothing leaks', async () => {
    const s = await rawConnect(fePort);
    s.write('CONNECT echo.lan:7 HTTP/1.1\r\n\r\n');
    const head = await readHead(s);
    expect(head.status).toBe(200);
    expect(opener.live.size).toBe(1);
    await new Promise((r) => setTimeout(r, 100)); // client says nothing
    expect(opener.live.size).toBe(1);
    s.destroy();
    await waitFor(() => opener.live.size === 0, 'tunnel stream to close after the client left');
    await waitFor(() => echoSockets.size === 0, 'target connection to close');
    // the front-end still serves
    const r = await get('http://device.lan/after', { headers: { host: 'device.lan' } });
    expect(r.status).toBe(200);
  });

  test('CONNECT whose open is slow: client leaving before it completes leaks nothing', async () => {
    const s = await rawConnect(fePort);
    s.write('CONNECT slow.lan:7 HTTP/1.1\r\n\r\n');
    await waitFor(() => opener.pending === 1, 'open to start');
    s.destroy();
    await waitFor(() => opener.pending === 0, 'open to settle', 3000);
    await waitFor(() => opener.live.size === 0, 'late stream to be closed', 3000);
    await waitFor(() => echoSockets.size === 0, 'target connection to close', 3000);
  });

  test('CONNECT whose open is reset by the client (RST) aborts the open', async () => {
    const s = await rawConnect(fePort);
    s.write('CONNECT hang.lan:443 HTTP/1.1\r\n\r\n');
    await waitFor(() => opener.pending === 1, 'open to start');
    s.resetAndDestroy();
    await waitFor(() => opener.aborted === 1 && opener.pending === 0, 'open to be aborted');
    expect(opener.live.size).toBe(0);
  });

  test('client closes during a keep-alive GET pool: close() releases everything', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    await Promise.all([1, 2, 3].map((i) => get(`http://device.lan/${i}`, { agent, headers: { host: 'device.lan' } })));
    agent.destroy();
    await fe.close();
    await waitFor(() => opener.live.size === 0 && opener.pending === 0, 'all streams closed');
  });
});

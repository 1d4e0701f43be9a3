import { once } from 'node:events';
import net from 'node:net';
import { Duplex, PassThrough, Readable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { Client as SshClient, Server as SshServer, type ServerChannel } from 'ssh2';
import { BrokerError } from '../../src/errors';
import { makeTarget } from '../../src/protocol/target';
import {
  encodeGreeting,
  encodeMethodSelection,
  encodeReply,
  encodeRequest,
  parseGreeting,
  parseMethodSelection,
  parseReply,
  parseRequest,
  type Parse,
} from '../../src/protocol/socks5';
import { SocksProtocolError, readMessage } from '../../src/protocol/socks-stream';
import { generateIdentity } from '../../src/transport/keys';

const GREETING = encodeGreeting();
const REQUEST = encodeRequest(makeTarget('example.com', 443));
const PAYLOAD = Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n');
const ALL = Buffer.concat([GREETING, REQUEST, PAYLOAD]);

const EVENTS = ['readable', 'data', 'end', 'close', 'error'] as const;
function listenerCounts(s: Readable): Record<string, number> {
  return Object.fromEntries(EVENTS.map((e) => [e, s.listenerCount(e)]));
}

/** Collect everything the stream yields until it ends (attaches 'data': flowing mode). */
async function collect(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (c: Buffer) => parts.push(c));
  await once(s, 'end');
  return Buffer.concat(parts);
}

/** Read exactly n bytes in paused mode (for sockets that are not ended). */
async function readExactly(s: Readable, n: number): Promise<Buffer> {
  return readMessage(s, (buf): Parse<{ bytes: Buffer }> =>
    buf.length >= n ? { state: 'ok', consumed: n, bytes: Buffer.from(buf.subarray(0, n)) } : { state: 'need-more' },
    { maxBytes: n + 65536, what: 'test bytes' }).then((r) => r.bytes);
}

async function rejection(p: Promise<unknown>): Promise<BrokerError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    return err as BrokerError;
  }
  throw new Error('expected a rejection');
}

describe('readMessage on PassThrough', () => {
  test('bytes delivered one at a time', async () => {
    const s = new PassThrough();
    const before = listenerCounts(s);
    const p = readMessage(s, parseGreeting, { what: 'SOCKS greeting' });
    const bytes = Buffer.concat([GREETING, REQUEST]);
    for (const byte of bytes) {
      s.write(Buffer.from([byte]));
      await tick();
    }
    const g = await p;
    expect(g).toEqual({ consumed: 3, methods: [0] });
    expect(listenerCounts(s)).toEqual(before);
    const r = await readMessage(s, parseRequest, { what: 'SOCKS request' });
    expect(r.target).toEqual({ host: 'example.com', port: 443, kind: 'domain' });
    expect(r.consumed).toBe(REQUEST.length);
    expect(listenerCounts(s)).toEqual(before);
  });

  test('request delivered one byte at a time after the greeting', async () => {
    const s = new PassThrough();
    s.write(GREETING);
    await readMessage(s, parseGreeting);
    const p = readMessage(s, parseRequest);
    for (const byte of REQUEST) {
      s.write(Buffer.from([byte]));
      await tick();
    }
    expect((await p).target.host).toBe('example.com');
  });

  test('greeting+request+payload in one chunk: payload is still pipeable', async () => {
    const s = new PassThrough();
    s.write(ALL);
    const g = await readMessage(s, parseGreeting);
    expect(g.methods).toEqual([0]);
    const r = await readMessage(s, parseRequest);
    expect(r.command).toBe(1);
    const sink = new PassThrough();
    s.pipe(sink); // synchronously right after the await
    const got = collect(sink);
    s.end(Buffer.from('more'));
    expect((await got).toString()).toBe(`${PAYLOAD.toString()}more`);
  });

  test('payload and end in one chunk: payload survives and end still fires', async () => {
    const s = new PassThrough();
    s.end(ALL);
    await readMessage(s, parseGreeting);
    await readMessage(s, parseRequest);
    expect(await collect(s)).toEqual(PAYLOAD);
  });

  test("payload readable with a plain 'data' listener attached right after", async () => {
    const s = new PassThrough();
    s.write(ALL);
    await readMessage(s, parseGreeting);
    await readMessage(s, parseRequest);
    const got = collect(s);
    s.end();
    expect(await got).toEqual(PAYLOAD);
  });

  test('called from inside a microtask and piped in the same microtask', async () => {
    const s = new PassThrough();
    const sink = new PassThrough();
    s.write(ALL);
    const got = collect(sink);
    await Promise.resolve()
      .then(() => readMessage(s, parseGreeting))
      .then(() => readMessage(s, parseRequest))
      .then(() => {
        s.pipe(sink);
        s.end();
      });
    expect(await got).toEqual(PAYLOAD);
  });

  test('bytes already buffered before the call are seen', async () => {
    const s = new PassThrough();
    s.write(GREETING);
    await tick();
    await tick();
    expect(s.readableLength).toBe(GREETING.length);
    await expect(readMessage(s, parseGreeting)).resolves.toEqual({ consumed: 3, methods: [0] });
  });

  test('stream ends before the message is complete', async () => {
    const s = new PassThrough();
    const before = listenerCounts(s);
    const p = readMessage(s, parseRequest, { what: 'SOCKS request' });
    s.end(REQUEST.subarray(0, 6));
    const err = await rejection(p);
    expect(err.code).toBe('BRK_BAD_REQUEST');
    expect(err.message).toBe('SOCKS request: connection closed before the message was complete (got 6 bytes)');
    expect(listenerCounts(s)).toEqual(before);
  });

  test('stream ends with nothing sent', async () => {
    const s = new PassThrough();
    const p = readMessage(s, parseGreeting, { what: 'SOCKS greeting' });
    s.end();
    const err = await rejection(p);
    expect(err.message).toMatch(/^SOCKS greeting: connection closed before .*\(got 0 bytes\)$/);
  });

  test('stream that already ended rejects at once', async () => {
    const s = new PassThrough();
    s.end();
    s.resume();
    await once(s, 'end');
    const err = await rejection(readMessage(s, parseGreeting));
    expect(err.message).toMatch(/closed before/);
    expect(listenerCounts(s).readable).toBe(0);
  });

  test('stream destroyed while waiting', async () => {
    const s = new PassThrough();
    const before = listenerCounts(s);
    const p = readMessage(s, parseGreeting);
    s.write(b(5));
    await tick();
    s.destroy();
    const err = await rejection(p);
    expect(err.code).toBe('BRK_BAD_REQUEST');
    expect(err.message).toMatch(/closed before the message was complete \(got 1 byte\)/);
    expect(listenerCounts(s)).toEqual(before);
  });

  test('stream error while waiting: cause is kept', async () => {
    const s = new PassThrough();
    const p = readMessage(s, parseGreeting);
    const boom = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    s.destroy(boom);
    const err = await rejection(p);
    expect(err.code).toBe('BRK_BAD_REQUEST');
    expect(err.message).toMatch(/connection failed before/);
    expect(err.cause).toBe(boom);
  });

  test('timeout', async () => {
    const s = new PassThrough();
    const before = listenerCounts(s);
    const p = readMessage(s, parseGreeting, { timeoutMs: 50, what: 'SOCKS greeting' });
    s.write(b(5, 2, 0));
    const t0 = Date.now();
    const err = await rejection(p);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    expect(err.code).toBe('BRK_TIMEOUT');
    expect(err.message).toBe('SOCKS greeting: timed out after 50 ms (got 3 bytes)');
    expect(listenerCounts(s)).toEqual(before);
  });

  test('no timer left behind after success', async () => {
    jest.useFakeTimers();
    try {
      const s = new PassThrough();
      s.write(GREETING);
      const p = readMessage(s, parseGreeting, { timeoutMs: 1000 });
      expect(jest.getTimerCount()).toBe(0); // parsed synchronously from the buffer
      await p;
      const q = readMessage(s, parseGreeting, { timeoutMs: 1000 });
      expect(jest.getTimerCount()).toBe(1);
      s.write(GREETING);
      await q;
      expect(jest.getTimerCount()).toBe(0);
    } finally {
      jest.useRealTimers();
    }
  });

  test('maxBytes exceeded without a complete message', async () => {
    const s = new PassThrough();
    const before = listenerCounts(s);
    const p = readMessage(s, parseGreeting, { maxBytes: 100, what: 'SOCKS greeting' });
    s.write(Buffer.concat([b(5, 255), Buffer.alloc(60)]));
    await tick();
    s.write(Buffer.alloc(60));
    const err = await rejection(p);
    expect(err.code).toBe('BRK_BAD_REQUEST');
    expect(err.message).toBe('SOCKS greeting: 122 bytes without a complete message (limit 100)');
    expect(listenerCounts(s)).toEqual(before);
  });

  test('default maxBytes is 1024', async () => {
    const s = new PassThrough();
    const never = (): Parse<object> => ({ state: 'need-more' });
    const p = readMessage(s, never);
    s.write(Buffer.alloc(1023));
    await tick();
    s.write(Buffer.alloc(1));
    const err = await rejection(p);
    expect(err.message).toMatch(/1024 bytes without a complete message \(limit 1024\)/);
  });

  test('a complete message followed by lots of payload is fine even beyond maxBytes', async () => {
    const s = new PassThrough();
    const big = Buffer.alloc(5000, 0x61);
    s.write(Buffer.concat([GREETING, big]));
    await expect(readMessage(s, parseGreeting, { maxBytes: 16 })).resolves.toEqual({ consumed: 3, methods: [0] });
    s.end();
    expect(await collect(s)).toEqual(big);
  });

  test('parser error: SocksProtocolError with the reply to send', async () => {
    const s = new PassThrough();
    const before = listenerCounts(s);
    const p = readMessage(s, parseGreeting);
    s.write(b(5, 0));
    const err = await rejection(p);
    expect(err).toBeInstanceOf(SocksProtocolError);
    expect(err.code).toBe('BRK_BAD_REQUEST');
    expect((err as SocksProtocolError).reply).toEqual(b(5, 0xff));
    expect(listenerCounts(s)).toEqual(before);
  });

  test('parser error in the request: reply 0x08 for unknown ATYP', async () => {
    const s = new PassThrough();
    s.write(Buffer.concat([GREETING, b(5, 1, 0, 9, 1, 2, 3)]));
    await readMessage(s, parseGreeting);
    const err = (await rejection(readMessage(s, parseRequest))) as SocksProtocolError;
    expect(err).toBeInstanceOf(SocksProtocolError);
    expect(err.message).toBe('SOCKS request: unknown address type 0x09 (expected 1, 3 or 4)');
    expect(err.reply).toEqual(encodeReply(0x08));
  });

  test('HTTP client on the SOCKS port: clear message, no reply', async () => {
    const s = new PassThrough();
    s.write('GET http://example.com/ HTTP/1.1\r\n');
    const err = (await rejection(readMessage(s, parseGreeting))) as SocksProtocolError;
    expect(err.message).toMatch(/first byte 0x47 looks like HTTP/);
    expect(err.reply).toBeUndefined();
  });

  test('plain BrokerError from a foreign parser is wrapped with its reply', async () => {
    const s = new PassThrough();
    const inner = new BrokerError('BRK_UNSUPPORTED', 'nope');
    const parser = (): Parse<object> => ({ state: 'error', error: inner, reply: b(1, 2) });
    s.write(b(0));
    const err = (await rejection(readMessage(s, parser))) as SocksProtocolError;
    expect(err).toBeInstanceOf(SocksProtocolError);
    expect(err.code).toBe('BRK_UNSUPPORTED');
    expect(err.message).toBe('nope');
    expect(err.reply).toEqual(b(1, 2));
    expect(err.cause).toBe(inner);
  });

  test('a throwing parser becomes BRK_INTERNAL', async () => {
    const s = new PassThrough();
    s.write(b(0));
    const err = await rejection(readMessage(s, () => { throw new Error('bug'); }));
    expect(err.code).toBe('BRK_INTERNAL');
    expect(err.message).toMatch(/parser failed: bug/);
  });

  test('abort signal', async () => {
    const s = new PassThrough();
    const before = listenerCounts(s);
    const ac = new AbortController();
    const p = readMessage(s, parseGreeting, { signal: ac.signal, what: 'SOCKS greeting' });
    ac.abort();
    const err = await rejection(p);
    expect(err.code).toBe('BRK_INTERNAL');
    expect(err.message).toBe('SOCKS greeting: aborted');
    expect(listenerCounts(s)).toEqual(before);
  });

  test('abort with a BrokerError reason rejects with that reason', async () => {
    const s = new PassThrough();
    const reason = new BrokerError('BRK_SESSION_ENDED', 'session ended');
    const err = await rejection(readMessage(s, parseGreeting, { signal: AbortSignal.abort(reason) }));
    expect(err).toBe(reason);
    expect(listenerCounts(s).readable).toBe(0);
  });

  test('abort listener removed after success', async () => {
    const s = new PassThrough();
    const ac = new AbortController();
    let added = 0;
    let removed = 0;
    const add = ac.signal.addEventListener.bind(ac.signal);
    const rem = ac.signal.removeEventListener.bind(ac.signal);
    ac.signal.addEventListener = ((...a: Parameters<typeof add>) => { added++; add(...a); }) as typeof add;
    ac.signal.removeEventListener = ((...a: Parameters<typeof rem>) => { removed++; rem(...a); }) as typeof rem;
    s.write(GREETING);
    await readMessage(s, parseGreeting, { signal: ac.signal });
    expect(added).toBe(1);
    expect(removed).toBe(1);
  });

  test('works on a generic Duplex', async () => {
    const chunks = [GREETING.subarray(0, 1), Buffer.concat([GREETING.subarray(1), REQUEST.subarray(0, 4)]), Buffer.concat([REQUEST.subarray(4), PAYLOAD])];
    const d = new Duplex({
      read() {
        const c = chunks.shift();
        setImmediate(() => this.push(c ?? null));
      },
      write(_c, _e, cb) { cb(); },
    });
    await readMessage(d, parseGreeting);
    const r = await readMessage(d, parseRequest);
    expect(r.target.port).toBe(443);
    expect(await collect(d)).toEqual(PAYLOAD);
  });
});

function b(...bytes: number[]): Buffer {
  return Buffer.from(bytes);
}

describe('readMessage on a real net.Socket pair', () => {
  let server: net.Server;
  let port: number;
  const serverSockets: net.Socket[] = [];

  beforeEach(async () => {
    server = net.createServer();
    server.on('connection', (s) => serverSockets.push(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as net.AddressInfo).port;
  });
  afterEach(async () => {
    for (const s of serverSockets.splice(0)) s.destroy();
    server.close();
    await once(server, 'close');
  });

  async function connectPair(): Promise<[net.Socket, net.Socket]> {
    const accepted = once(server, 'connection') as Promise<[net.Socket]>;
    const client = net.connect(port, '127.0.0.1');
    client.setNoDelay(true);
    await once(client, 'connect');
    const [srv] = await accepted;
    return [client, srv];
  }

  test('pipelined SOCKS conversation: both sides, payload relayed with no byte lost', async () => {
    const [client, srv] = await connectPair();
    // The "broker" side: SOCKS server that echoes the payload back after the reply.
    const serverDone = (async () => {
      const g = await readMessage(srv, parseGreeting, { timeoutMs: 2000, what: 'SOCKS greeting' });
      expect(g.methods).toEqual([0]);
      srv.write(encodeMethodSelection(0));
      const r = await readMessage(srv, parseRequest, { timeoutMs: 2000, what: 'SOCKS request' });
      expect(r.target).toEqual({ host: 'example.com', port: 443, kind: 'domain' });
      srv.write(encodeReply(0, { host: '::1', port: 4321 }));
      srv.pipe(srv); // echo
    })();
    // The "helper" side: write greeting + request + payload at once.
    client.write(ALL);
    const m = await readMessage(client, parseMethodSelection, { timeoutMs: 2000 });
    expect(m.method).toBe(0);
    const rep = await readMessage(client, parseReply, { timeoutMs: 2000 });
    expect(rep).toEqual({ consumed: 22, rep: 0, bound: { host: '::1', port: 4321 } });
    await serverDone;
    expect(await readExactly(client, PAYLOAD.length)).toEqual(PAYLOAD);
    client.write('second');
    expect((await readExactly(client, 6)).toString()).toBe('second');
    client.destroy();
  });

  test('bytes one at a time over TCP', async () => {
    const [client, srv] = await connectPair();
    const p = (async () => {
      const g = await readMessage(srv, parseGreeting, { timeoutMs: 5000 });
      const r = await readMessage(srv, parseRequest, { timeoutMs: 5000 });
      return { g, r };
    })();
    for (const byte of Buffer.concat([GREETING, REQUEST])) {
      client.write(Buffer.from([byte]));
      await new Promise((res) => setTimeout(res, 2));
    }
    const { g, r } = await p;
    expect(g.methods).toEqual([0]);
    expect(r.target.host).toBe('example.com');
    client.destroy();
  });

  test('peer closes mid-message', async () => {
    const [client, srv] = await connectPair();
    const before = listenerCounts(srv);
    const p = readMessage(srv, parseRequest, { timeoutMs: 5000, what: 'SOCKS request' });
    client.end(REQUEST.subarray(0, 5));
    const err = await rejection(p);
    expect(err.code).toBe('BRK_BAD_REQUEST');
    expect(err.message).toBe('SOCKS request: connection closed before the message was complete (got 5 bytes)');
    expect(listenerCounts(srv)).toEqual(before);
  });

  test('client sends everything then half-closes: payload and EOF still delivered', async () => {
    const [client, srv] = await connectPair();
    client.end(ALL);
    await readMessage(srv, parseGreeting, { timeoutMs: 2000 });
    await readMessage(srv, parseRequest, { timeoutMs: 2000 });
    expect(await collect(srv)).toEqual(PAYLOAD);
  });

  test('timeout on a silent socket', async () => {
    const [client, srv] = await connectPair();
    const err = await rejection(readMessage(srv, parseGreeting, { timeoutMs: 50 }));
    expect(err.code).toBe('BRK_TIMEOUT');
    client.destroy();
  });
});

describe('readMessage on ssh2 channels', () => {
  jest.setTimeout(20000);
  let sshd: SshServer;
  let conn: SshClient;
  const channels: ServerChannel[] = [];
  let onChannel: ((ch: ServerChannel) => void) | undefined;

  beforeAll(async () => {
    const hostKey = generateIdentity().privateKey; // re-parsed: ssh2's generator rarely emits a key it cannot load
    sshd = new SshServer({ hostKeys: [hostKey] }, (client) => {
      client.on('authentication', (ctx) => ctx.accept());
      client.on('ready', () => {
        client.on('tcpip', (accept) => {
          const ch = accept();
          channels.push(ch);
          onChannel?.(ch);
        });
      });
      client.on('error', () => undefined);
    });
    sshd.listen(0, '127.0.0.1');
    await once(sshd, 'listening');
    conn = new SshClient();
    conn.connect({ host: '127.0.0.1', port: (sshd.address() as net.AddressInfo).port, username: 'test', password: 'x' });
    await once(conn, 'ready');
  });
  afterAll(async () => {
    conn?.end();
    sshd?.close();
  });

  function openChannel(): Promise<[Duplex, ServerChannel]> {
    return new Promise((resolve, reject) => {
      let srvCh: ServerChannel | undefined;
      let cliCh: Duplex | undefined;
      const done = (): void => { if (srvCh && cliCh) resolve([cliCh, srvCh]); };
      onChannel = (ch) => { srvCh = ch; done(); };
      conn.forwardOut('127.0.0.1', 1, 'example.com', 443, (err, ch) => {
        if (err) reject(err);
        else { cliCh = ch; done(); }
      });
    });
  }

  test('pipelined greeting+request+payload inside a channel, relayed reply, payload intact', async () => {
    const [cli, srv] = await openChannel();
    const server = (async () => {
      await readMessage(srv, parseGreeting, { timeoutMs: 2000 });
      srv.write(encodeMethodSelection(0));
      const r = await readMessage(srv, parseRequest, { timeoutMs: 2000 });
      srv.write(encodeReply(0x05)); // relay "connection refused" exactly
      return { r, rest: await collect(srv) };
    })();
    cli.write(ALL);
    cli.end();
    expect((await readMessage(cli, parseMethodSelection, { timeoutMs: 2000 })).method).toBe(0);
    expect((await readMessage(cli, parseReply, { timeoutMs: 2000 })).rep).toBe(0x05);
    const { r, rest } = await server;
    expect(r.target.host).toBe('example.com');
    expect(rest).toEqual(PAYLOAD);
  });

  test('byte-at-a-time inside a channel and early close', async () => {
    const [cli, srv] = await openChannel();
    const p = readMessage(srv, parseRequest, { timeoutMs: 5000, what: 'SOCKS request' });
    for (const byte of REQUEST.subarray(0, 7)) {
      cli.write(Buffer.from([byte]));
      await new Promise((res) => setTimeout(res, 2));
    }
    cli.end();
    const err = await rejection(p);
    expect(err.message).toBe('SOCKS request: connection closed before the message was complete (got 7 bytes)');
    expect(srv.listenerCount('readable')).toBe(0);
  });
});

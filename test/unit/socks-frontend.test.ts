/**
 * The helper's SOCKS5 front-end over a fake StreamOpener, driven by a raw SOCKS
 * client: every BrokerError code becomes the exact REP byte the README promises;
 * malformed or unsupported input gets the documented answer and is cut off.
 */
import net from 'node:net';
import { BROKER_ERROR_CODES, BrokerError, toSocksReply, type BrokerErrorCode } from '../../src/errors';
import { SocksFrontend, type SocksFrontendEvents } from '../../src/helper/socks-frontend';
import { encodeRequest } from '../../src/protocol/socks5';
import { makeTarget } from '../../src/protocol/target';
import { FakeOpener, closeServer, listen, waitFor, type Route } from './fake-opener';

/** The README's "Errors helpers see" table, written out independently of errors.ts. */
const DOCUMENTED_REP: Partial<Record<BrokerErrorCode, number>> = {
  BRK_POLICY_DENIED: 0x02,
  BRK_NET_UNREACHABLE: 0x03,
  BRK_HOST_UNREACHABLE: 0x04,
  BRK_CONN_REFUSED: 0x05,
  BRK_TIMEOUT: 0x06,
  BRK_AGENT_OFFLINE: 0x03,
  BRK_BAD_TARGET: 0x08,
  BRK_UNSUPPORTED: 0x07,
};

/** Everything the server sends until it closes (bounded). */
function readUntilClose(sock: net.Socket, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error(`server did not close within ${timeoutMs} ms (got ${Buffer.concat(parts).toString('hex')})`)), timeoutMs);
    sock.on('data', (c: Buffer) => parts.push(c));
    sock.once('close', () => { clearTimeout(timer); resolve(Buffer.concat(parts)); });
    sock.resume();
  });
}

/** Read exactly n bytes (bounded). */
function readBytes(sock: net.Socket, n: number, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let acc = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error(`got ${acc.length} of ${n} bytes: ${acc.toString('hex')}`)), timeoutMs);
    const onData = (c: Buffer) => {
      acc = Buffer.concat([acc, c]);
      if (acc.length >= n) {
        clearTimeout(timer);
        sock.off('data', onData);
        sock.pause();
        if (acc.length > n) sock.unshift(acc.subarray(n));
        resolve(acc.subarray(0, n));
      }
    };
    sock.on('data', onData);
    sock.resume();
  });
}

describe('SocksFrontend over a fake opener', () => {
  let echo: net.Server;
  let echoPort: number;
  let echoSockets: Set<net.Socket>;
  let opener: FakeOpener;
  let fe: SocksFrontend;
  let port: number;
  let events: Array<SocksFrontendEvents['stream'][0]>;

  beforeEach(async () => {
    echoSockets = new Set();
    echo = net.createServer((s) => {
      echoSockets.add(s);
      s.once('close', () => echoSockets.delete(s));
      s.on('error', () => {});
      s.write('hi\n');
      s.on('data', (c: Buffer) => s.write(c.toString().toUpperCase()));
      s.on('end', () => s.end());
    });
    echoPort = await listen(echo);
    opener = new FakeOpener((t): Route => {
      if (t.host === 'echo.lan') return { port: echoPort };
      if (t.host === 'hang.lan') return { hang: true };
      if (t.host === 'slow.lan') return { port: echoPort, delayMs: 100 };
      const code = /^err-(brk_[a-z_]+)\.lan$/.exec(t.host)?.[1]?.toUpperCase() as BrokerErrorCode | undefined;
      if (code) return { error: new BrokerError(code, `simulated ${code}`) };
      if (t.host === 'plain-error.lan') return { error: new Error('not a BrokerError') as BrokerError };
      return { error: new BrokerError('BRK_HOST_UNREACHABLE', 'no route in the fake') };
    });
    fe = new SocksFrontend(opener);
    const mine: typeof events = [];
    events = mine;
    fe.on('stream', (e) => mine.push(e)); // late events of a previous test's front-end go elsewhere
    await fe.start('127.0.0.1', 0);
    port = fe.address().port;
  });

  afterEach(async () => {
    await fe.close();
    await closeServer(echo, echoSockets);
  });

  async function client(): Promise<net.Socket> {
    const s = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
    s.on('error', () => {});
    return s;
  }

  /** Greeting + CONNECT in one write (as curl does); returns the 2-byte method selection and the 10-byte reply. */
  async function connectTo(host: string, p: number): Promise<{ sock: net.Socket; method: Buffer; reply: Buffer }> {
    const sock = await client();
    sock.write(Buffer.concat([Buffer.from([5, 1, 0]), encodeRequest(makeTarget(host, p))]));
    const method = await readBytes(sock, 2);
    const reply = await readBytes(sock, 10);
    return { sock, method, reply };
  }

  test('CONNECT succeeds: 05 00 with the bound address, then bytes both ways', async () => {
    const { sock, method, reply } = await connectTo('echo.lan', 7);
    expect([...method]).toEqual([5, 0]);
    expect([...reply.subarray(0, 4)]).toEqual([5, 0, 0, 1]);
    expect([...reply.subarray(4, 8)]).toEqual([127, 0, 0, 1]);
    expect(reply.readUInt16BE(8)).toBeGreaterThan(0);
    sock.write('abc\n');
    sock.end();
    expect((await readUntilClose(sock)).toString()).toBe('hi\nABC\n');
    await waitFor(() => opener.live.size === 0, 'tunnel stream to close');
    await waitFor(() => events.length === 1, 'stream event');
    expect(events[0]).toMatchObject({ target: 'echo.lan:7', rep: 0, sent: 4, received: 7 });
  });

  test.each(BROKER_ERROR_CODES.map((c) => [c, `0${(DOCUMENTED_REP[c] ?? toSocksReply(c)).toString(16)}`, DOCUMENTED_REP[c] ?? toSocksReply(c)] as const))('opener fails with %s -> REP 0x%s', async (code, _hex, rep) => {
    const host = `err-${code.toLowerCase()}.lan`;
    const { sock, method, reply } = await connectTo(host, 443);
    expect([...method]).toEqual([5, 0]);
    expect(reply[0]).toBe(5);
    expect(reply[1]).toBe(rep);
    expect(reply[2]).toBe(0);
    await readUntilClose(sock); // and the server closes
    expect(opener.live.size).toBe(0);
    expect(events).toEqual([{ target: `${host}:443`, rep, reason: `simulated ${code}` }]);
  });

  test('the documented rows are what the README says', () => {
    // guards the table above against a silent change in errors.ts
    for (const [code, rep] of Object.entries(DOCUMENTED_REP)) expect(toSocksReply(code as BrokerErrorCode)).toBe(rep);
  });

  test('a non-BrokerError from the opener -> 0x01 general failure', async () => {
    const { sock, reply } = await connectTo('plain-error.lan', 80);
    expect(reply[1]).toBe(0x01);
    await readUntilClose(sock);
  });

  test('greeting with another SOCKS version (4) -> no reply, connection cut', async () => {
    const sock = await client();
    sock.write(Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0]));
    expect((await readUntilClose(sock)).length).toBe(0);
    expect(opener.opened).toEqual([]);
  });

  test('greeting that is not SOCKS at all (HTTP) -> no reply, connection cut', async () => {
    const sock = await client();
    sock.write('GET / HTTP/1.1\r\n\r\n');
    expect((await readUntilClose(sock)).length).toBe(0);
  });

  test('greeting with NMETHODS = 0 -> 05 FF, closed', async () => {
    const sock = await client();
    sock.write(Buffer.from([5, 0]));
    expect([...(await readUntilClose(sock))]).toEqual([5, 0xff]);
  });

  test('no acceptable method (only username/password, GSSAPI) -> 05 FF, closed', async () => {
    const sock = await client();
    sock.write(Buffer.from([5, 2, 2, 1]));
    expect([...(await readUntilClose(sock))]).toEqual([5, 0xff]);
    expect(opener.opened).toEqual([]);
  });

  test('no-auth offered among others is chosen', async () => {
    const sock = await client();
    sock.write(Buffer.from([5, 3, 2, 1, 0]));
    expect([...(await readBytes(sock, 2))]).toEqual([5, 0]);
    sock.destroy();
  });

  test.each([
    ['BIND', 2],
    ['UDP ASSOCIATE', 3],
  ])('%s -> REP 0x07 command not supported, opener never called', async (_name, cmd) => {
    const sock = await client();
    sock.write(Buffer.from([5, 1, 0]));
    expect([...(await readBytes(sock, 2))]).toEqual([5, 0]);
    sock.write(encodeRequest(makeTarget('10.0.0.5', 80), cmd));
    const rest = await readUntilClose(sock);
    expect(rest[0]).toBe(5);
    expect(rest[1]).toBe(0x07);
    expect(opener.opened).toEqual([]);
    expect(events).toEqual([expect.objectContaining({ rep: 7 })]);
  });

  test('unknown command byte (9) -> REP 0x07', async () => {
    const sock = await client();
    sock.write(Buffer.from([5, 1, 0, 5, 9, 0, 1, 10, 0, 0, 5, 0, 80]));
    const all = await readUntilClose(sock);
    expect([...all.subarray(0, 2)]).toEqual([5, 0]);
    expect(all[3]).toBe(0x07);
  });

  test('unknown address type (0x05) -> REP 0x08', async () => {
    const sock = await client();
    sock.write(Buffer.from([5, 1, 0, 5, 1, 0, 5, 10, 0, 0, 5, 0, 80]));
    const all = await readUntilClose(sock);
    expect(all[3]).toBe(0x08);
    expect(opener.opened).toEqual([]);
  });

  test('CONNECT to port 0 -> REP 0x01, opener never called', async () => {
    const sock = await client();
    sock.write(Buffer.from([5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 5, 0, 0]));
    const all = await readUntilClose(sock);
    expect(all[3]).toBe(0x01);
    expect(opener.opened).toEqual([]);
  });

  test('request with a bad SOCKS version -> REP 0x01', async () => {
    const sock = await client();
    sock.write(Buffer.from([5, 1, 0, 4, 1, 0, 1, 10, 0, 0, 5, 0, 80]));
    const all = await readUntilClose(sock);
    expect(all[3]).toBe(0x01);
  });

  test('client gone during the handshake: no crash, server keeps serving', async () => {
    const a = await client();
    a.write(Buffer.from([5, 1]));
    a.destroy();
    const b = await client();
    b.write(Buffer.from([5]));
    b.end();
    await new Promise((r) => setTimeout(r, 50));
    const { sock, reply } = await connectTo('echo.lan', 7);
    expect(reply[1]).toBe(0);
    sock.destroy();
    await waitFor(() => opener.live.size === 0, 'tunnel stream to close');
  });

  test('close() cuts open tunnels: nothing leaks', async () => {
    const { reply } = await connectTo('echo.lan', 7);
    expect(reply[1]).toBe(0);
    expect(opener.live.size).toBe(1);
    await fe.close();
    await waitFor(() => opener.live.size === 0, 'tunnel stream to close after close()');
    await waitFor(() => echoSockets.size === 0, 'target connection to close');
  });

  test('a client that gives up (FIN) while the device is dialing cancels the open', async () => {
    const sock = await client();
    // Pipelined: the method selection is held back until the reply, so nothing arrives meanwhile.
    sock.write(Buffer.concat([Buffer.from([5, 1, 0]), encodeRequest(makeTarget('hang.lan', 80))]));
    await waitFor(() => opener.pending === 1, 'open to start');
    sock.end();
    await waitFor(() => opener.aborted === 1, 'open to be aborted');
    await waitFor(() => opener.pending === 0 && opener.live.size === 0, 'nothing left open');
  });

  test('bytes a client sends before the reply (optimistic) reach the target in order', async () => {
    const sock = await client();
    sock.write(Buffer.concat([Buffer.from([5, 1, 0]), encodeRequest(makeTarget('slow.lan', 7)), Buffer.from('early')]));
    await readBytes(sock, 2);
    const reply = await readBytes(sock, 10);
    expect(reply[1]).toBe(0);
    const got = await readBytes(sock, 'hi\nEARLY'.length);
    expect(got.toString()).toBe('hi\nEARLY');
    sock.destroy();
  });
});

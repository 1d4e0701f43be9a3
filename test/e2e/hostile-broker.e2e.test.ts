/**
 * The device must not trust the broker: a fake broker (a raw ssh2 server) that
 * accepts the agent's expose request and then asks, through the reverse tunnel,
 * for destinations the device's own policy forbids gets SOCKS 0x02 from the
 * agent, which never dials them. Allowed destinations still work, and malformed
 * SOCKS bytes from the broker are answered and closed. The same holds for named
 * opens (the target in the open itself): forbidden or malformed ones are refused
 * with a typed reason before anything is dialled. A broker that opens more streams
 * at once than the device allows is refused with BRK_RATE_LIMITED.
 */
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import type { Connection, ServerChannel } from 'ssh2';
import { Agent } from '../../src/agent/agent';
import { OpenFailure, toOpenFailure, type BrokerErrorCode } from '../../src/errors';
import { makeDescriptor } from '../../src/protocol/descriptor';
import { announcesNamedOpens } from '../../src/protocol/named-open';
import { encodeGreeting, encodeRequest } from '../../src/protocol/socks5';
import { makeTarget } from '../../src/protocol/target';
import { startFakeBroker, type FakeBroker } from './fake-broker';

/** A named open to the agent: the data it sends on success, or the open failure's reason and description. */
async function namedOpen(conn: Connection, bind: { addr: string; port: number }, originAddr: string, originPort: number): Promise<{ data?: string; reason?: number; description?: string }> {
  return new Promise((resolve) => {
    conn.forwardOut(bind.addr, bind.port, originAddr, originPort, (err, ch) => {
      if (err) {
        const e = err as Error & { reason?: number };
        resolve({ reason: e.reason, description: e.message.replace(/^\(SSH\) Channel open failure: /, '') });
        return;
      }
      const chunks: Buffer[] = [];
      ch.on('data', (c: Buffer) => chunks.push(c));
      const done = () => resolve({ data: Buffer.concat(chunks).toString() });
      ch.once('end', () => { done(); ch.destroy(); });
      ch.once('close', done);
      setTimeout(() => ch.destroy(), 5000).unref();
    });
  });
}

/** Ask the agent, as the broker would, for `host:port`; returns the SOCKS reply byte (or -1 if closed without one). */
async function askAgent(conn: Connection, bind: { addr: string; port: number }, bytes: Buffer): Promise<{ rep: number; text: string }> {
  const ch = await new Promise<ServerChannel>((resolve, reject) => {
    conn.forwardOut(bind.addr, bind.port, '127.0.0.1', 1, (err, c) => (err ? reject(err) : resolve(c)));
  });
  ch.write(bytes);
  const data = await new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    ch.on('data', (c: Buffer) => chunks.push(c));
    ch.once('end', () => { resolve(Buffer.concat(chunks)); ch.destroy(); });
    ch.once('close', () => resolve(Buffer.concat(chunks)));
    setTimeout(() => { ch.destroy(); resolve(Buffer.concat(chunks)); }, 5000).unref();
  });
  // Method selection (2 bytes) then the reply (10 bytes for IPv4), then the reason text.
  return { rep: data.length >= 4 ? data[3]! : -1, text: data.subarray(12).toString() };
}

describe('an agent facing a hostile broker', () => {
  let broker: FakeBroker;
  let agent: Agent;
  let target: net.Server;
  let targetPort: number;
  /** Allowed by the device's policy, but nothing listens there. */
  let closedPort: number;
  const dialled: string[] = [];
  let kbDir: string;

  beforeAll(async () => {
    target = net.createServer((s) => { dialled.push(`${s.localAddress}:${s.localPort}`); s.end('hello from the device network'); });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    targetPort = (target.address() as net.AddressInfo).port;
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    broker = await startFakeBroker();
    kbDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rab-hb-'));
    agent = new Agent({
      broker: `127.0.0.1:${broker.port}`,
      descriptor: makeDescriptor({ allow: [`127.0.0.1:${targetPort}`, `127.0.0.1:${closedPort}`] }),
      knownBrokersFile: path.join(kbDir, 'known_brokers'),
    });
    await agent.start();
  }, 30_000);

  afterAll(async () => {
    agent.close();
    await broker.close();
    target.close();
    fs.rmSync(kbDir, { recursive: true, force: true });
  });

  test.each([
    ['loopback on another port', '127.0.0.1', 22],
    ['loopback on another address', '127.0.0.2', 80],
    ['IPv6 loopback', '::1', 22],
    ['loopback spelled as a number', '2130706433', 22],
    ['localhost by name', 'localhost', 22],
  ])('refuses %s with 0x02 and never dials it', async (_what, host, port) => {
    const before = dialled.length;
    const r = await askAgent(await broker.conn, await broker.binding, Buffer.concat([encodeGreeting(), encodeRequest(makeTarget(host, port))]));
    expect(r.rep).toBe(0x02);
    expect(r.text).toMatch(/not|loopback|allow|denied/i);
    expect(dialled.length).toBe(before);
  });

  test('still serves what its own policy allows', async () => {
    const r = await askAgent(await broker.conn, await broker.binding, Buffer.concat([encodeGreeting(), encodeRequest(makeTarget('127.0.0.1', targetPort))]));
    expect(r.rep).toBe(0x00);
    expect(dialled.length).toBeGreaterThan(0);
  });

  test('malformed SOCKS bytes from the broker get a reply or a close, and the agent keeps working', async () => {
    const conn = await broker.conn;
    const bind = await broker.binding;
    const bad = await askAgent(conn, bind, Buffer.from([5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4, 0, 80])); // unknown address type
    expect([0x08, -1]).toContain(bad.rep);
    const ok = await askAgent(conn, bind, Buffer.concat([encodeGreeting(), encodeRequest(makeTarget('127.0.0.1', targetPort))]));
    expect(ok.rep).toBe(0x00);
  });

  describe('named opens', () => {
    test('the agent announces them in its SSH identification', async () => {
      expect(announcesNamedOpens(await broker.identComments)).toBe(true);
    });

    test('an allowed target is dialled before the open is confirmed, and the stream carries its bytes', async () => {
      const before = dialled.length;
      const r = await namedOpen(await broker.conn, await broker.binding, `remote-assist:connect:3:127.0.0.1`, targetPort);
      expect(r).toMatchObject({ data: 'hello from the device network' });
      expect(dialled.length).toBe(before + 1);
    });

    test.each([
      ['loopback on another port', 'remote-assist:connect:3:127.0.0.1', 22, 'BRK_POLICY_DENIED'],
      ['IPv6 loopback', 'remote-assist:connect:3:::1', 22, 'BRK_POLICY_DENIED'],
      ['localhost by name', 'remote-assist:connect:3:localhost', 22, 'BRK_POLICY_DENIED'],
      // malformed ones: one per error code here; the parser's unit tests have the rest
      ['a host that is not a name', 'remote-assist:connect:3:a b', 80, 'BRK_BAD_TARGET'],
      ['an unknown verb', 'remote-assist:exec:rm -rf /', 0, 'BRK_BAD_REQUEST'],
    ])('%s: refused with the typed reason in the open failure, never dialled', async (_what, originAddr, port, code) => {
      const before = dialled.length;
      const r = await namedOpen(await broker.conn, await broker.binding, originAddr, port);
      expect(r.data).toBeUndefined();
      expect(r.description).toMatch(new RegExp(`^${code}: .+`));
      expect(r.reason).toBe(toOpenFailure(code as BrokerErrorCode));
      expect(dialled.length).toBe(before);
    });

    test('a probe is refused at once', async () => {
      const r = await namedOpen(await broker.conn, await broker.binding, 'remote-assist:probe', 0);
      expect(r.description).toMatch(/^BRK_BAD_REQUEST: probe$/);
    });

    test('an allowed port with nothing listening is refused with the device\'s dial error', async () => {
      const r = await namedOpen(await broker.conn, await broker.binding, 'remote-assist:connect:3:127.0.0.1', closedPort);
      expect(r.description).toMatch(/^BRK_CONN_REFUSED: 127\.0\.0\.1:\d+/);
      expect(r.reason).toBe(toOpenFailure('BRK_CONN_REFUSED'));
    });
  });
});

describe('a broker that floods the device with streams', () => {
  const MAX = 3;
  let broker: FakeBroker;
  let agent: Agent;
  let target: net.Server;
  let targetPort: number;
  const held: net.Socket[] = [];
  let kbDir: string;

  beforeAll(async () => {
    // A destination that keeps every connection open: streams to it stay open.
    target = net.createServer((s) => { held.push(s); s.on('error', () => {}); });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    targetPort = (target.address() as net.AddressInfo).port;
    broker = await startFakeBroker();
    kbDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rab-hb-'));
    agent = new Agent({
      broker: `127.0.0.1:${broker.port}`,
      descriptor: makeDescriptor({ allow: [`127.0.0.1:${targetPort}`] }),
      knownBrokersFile: path.join(kbDir, 'known_brokers'),
      maxStreams: MAX,
    });
    await agent.start();
  }, 30_000);

  afterAll(async () => {
    agent.close();
    await broker.close();
    for (const s of held) s.destroy();
    target.close();
    fs.rmSync(kbDir, { recursive: true, force: true });
  });

  /** Open a stream as the broker would: the channel, or the open failure. */
  function open(originAddr: string, originPort: number): Promise<ServerChannel | { reason?: number; description: string }> {
    return Promise.all([broker.conn, broker.binding]).then(([conn, bind]) => new Promise((resolve) => {
      conn.forwardOut(bind.addr, bind.port, originAddr, originPort, (err, ch) => {
        if (!err) return resolve(ch);
        const e = err as Error & { reason?: number };
        resolve({ reason: e.reason, description: e.message.replace(/^\(SSH\) Channel open failure: /, '') });
      });
    }));
  }

  test(`beyond ${MAX} streams at once the agent refuses with BRK_RATE_LIMITED, and takes more once one closed`, async () => {
    const named = `remote-assist:connect:5:127.0.0.1`;
    const open3 = await Promise.all(Array.from({ length: MAX }, () => open(named, targetPort)));
    const channels = open3.filter((x): x is ServerChannel => typeof (x as ServerChannel).write === 'function');
    expect(channels).toHaveLength(MAX);

    const refusal = { reason: OpenFailure.RESOURCE_SHORTAGE, description: `BRK_RATE_LIMITED: more than ${MAX} streams at once on this device` };
    expect(await open(named, targetPort)).toEqual(refusal);
    expect(await open('127.0.0.1', 1)).toEqual(refusal); // a SOCKS-path channel too

    channels[0]!.destroy();
    let again: Awaited<ReturnType<typeof open>> | undefined;
    for (let i = 0; i < 50; i++) {
      again = await open(named, targetPort);
      if (typeof (again as ServerChannel).write === 'function') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(typeof (again as ServerChannel).write).toBe('function');
    (again as ServerChannel).destroy();
    for (const ch of channels.slice(1)) ch.destroy();
  });
});

/**
 * Uploads: whoever accepts a stream sizes its window to its own leg. A device accepts
 * the broker's streams (broker -> device), the broker accepts a helper's (helper ->
 * broker). Over a long leg a new stream opens with the cap (64 KiB), not ssh2's 2 MiB,
 * which one upload would otherwise put in front of every other stream on a slow link.
 * Both time their leg with global requests. The legs here go through
 * bench/lib/delay-relay.js (10 ms each way); the peer is a raw ssh2 endpoint, which
 * sees exactly what window was announced; uploads through such streams arrive intact.
 * On loopback a device sizes its windows too (there it decrypts, the slowest stage);
 * the broker leaves a helper's loopback leg to ssh2.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Client, ClientChannel, ServerChannel } from 'ssh2';
import { Agent } from '../../src/agent/agent';
import { makeDescriptor } from '../../src/protocol/descriptor';
import { halfClose } from '../../src/transport/relay';
import { startFakeBroker, type FakeBroker } from './fake-broker';
import { rawSshClient, startBroker, startExpose } from './harness';

const MAX_WINDOW = 2 * 1024 * 1024;
const CAP = 64 * 1024;

/** A relay to `port` with `delayMs` each way; resolves with its listening port. */
async function delayRelay(port: number, delayMs: number): Promise<{ port: number; child: ChildProcess }> {
  const child = fork(path.join(__dirname, '../../bench/lib/delay-relay.js'), [String(delayMs), String(port)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const ports = await new Promise<number[]>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { ports: number[] }).ports));
    child.once('exit', (c) => reject(new Error(`delay relay exited (${c})`)));
  });
  return { port: ports[0]!, child };
}

/** A named open from the fake broker to the agent, for `127.0.0.1:port`. */
function openStream(broker: FakeBroker, port: number): Promise<ServerChannel> {
  return Promise.all([broker.conn, broker.binding]).then(([conn, bind]) => new Promise((resolve, reject) => {
    conn.forwardOut(bind.addr, bind.port, 'remote-assist:connect:3:127.0.0.1', port, (err, ch) => (err ? reject(err) : resolve(ch)));
  }));
}

/** The window the peer granted when it accepted `ch`. */
function announced(ch: ServerChannel | ClientChannel): number {
  return (ch as unknown as { outgoing: { window: number } }).outgoing.window;
}

/** Open streams with `open` until one is granted less than ssh2's window (bounded): the peer has timed its leg. */
async function firstCapped<T extends ServerChannel | ClientChannel>(open: () => Promise<T>): Promise<{ ch: T | undefined; windows: number[] }> {
  const windows: number[] = [];
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    const ch = await open();
    windows.push(announced(ch));
    if (announced(ch) < MAX_WINDOW) return { ch, windows };
    ch.destroy();
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ch: undefined, windows };
}

/** Upload `data` on `ch`, half-close, and resolve with what comes back (the target's digest). */
async function upload(ch: ServerChannel | ClientChannel, data: Buffer): Promise<string> {
  const reply = new Promise<string>((resolve) => {
    const chunks: Buffer[] = [];
    ch.on('data', (c: Buffer) => chunks.push(c));
    ch.once('close', () => resolve(Buffer.concat(chunks).toString()));
  });
  for (let off = 0; off < data.length; off += 100_000) {
    if (!ch.write(data.subarray(off, off + 100_000))) await new Promise((r) => ch.once('drain', r));
  }
  halfClose(ch); // EOF only (an ssh2 server channel's end() would close it before the digest comes back)
  return reply;
}

/** The credit the peer held on `ch` right after each window adjust it sent from now on (ssh2 server internals). */
function creditsAfterAdjusts(conn: object, ch: ServerChannel): number[] {
  const credits: number[] = [];
  const handlers = (conn as { _protocol: { _handlers: Record<string, (p: unknown, recipient: number, amount: number) => void> } })._protocol._handlers;
  const original = handlers.CHANNEL_WINDOW_ADJUST!;
  const local = (ch as unknown as { incoming: { id: number } }).incoming.id;
  handlers.CHANNEL_WINDOW_ADJUST = (p, recipient, amount) => {
    if (recipient === local) credits.push(announced(ch) + amount); // before ssh2 sends what waited for it
    original(p, recipient, amount);
  };
  return credits;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A target that hashes what each connection uploads and answers with the hex digest once it ends. */
async function startHashingTarget(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => {
    const h = createHash('sha256');
    s.on('data', (c) => h.update(c));
    s.on('end', () => s.end(h.digest('hex')));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

describe('a device accepting streams', () => {
  let target: net.Server;
  let targetPort: number;
  const cleanups: Array<() => void | Promise<void>> = [];
  let kbDir: string;

  beforeAll(async () => {
    ({ server: target, port: targetPort } = await startHashingTarget());
    kbDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rab-dw-'));
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  afterAll(() => {
    target.close();
    fs.rmSync(kbDir, { recursive: true, force: true });
  });

  async function exposeThrough(address: string, broker: FakeBroker): Promise<Agent> {
    const agent = new Agent({
      broker: address,
      descriptor: makeDescriptor({ allow: [`127.0.0.1:${targetPort}`] }),
      knownBrokersFile: path.join(kbDir, `kb-${address.replace(/\W/g, '_')}`),
    });
    cleanups.push(() => agent.close());
    await agent.start();
    await broker.binding;
    return agent;
  }

  test('over a long leg a stream opens with the cap, and 8 MiB uploaded through it arrive intact', async () => {
    const broker = await startFakeBroker();
    cleanups.push(() => broker.close());
    const relay = await delayRelay(broker.port, 10);
    cleanups.push(() => { relay.child.kill(); });
    await exposeThrough(`127.0.0.1:${relay.port}`, broker);

    // The agent times its leg right after connecting (three global requests, 20 ms each);
    // until then a stream gets ssh2's window.
    const { ch, windows } = await firstCapped(() => openStream(broker, targetPort));
    expect(ch).toBeDefined();
    expect(windows.at(-1)).toBe(CAP);
    const data = randomBytes(8 * 1024 * 1024);
    expect(await upload(ch!, data)).toBe(sha256(data));
  }, 60_000);

  test('on loopback a stream opens with the cap; uploading alone it grows past it, and while a light stream is active it is held to the cap', async () => {
    const broker = await startFakeBroker();
    cleanups.push(() => broker.close());
    await exposeThrough(`127.0.0.1:${broker.port}`, broker);
    const bulk = await openStream(broker, targetPort);
    expect(announced(bulk)).toBe(CAP);
    const credits = creditsAfterAdjusts(await broker.conn, bulk);
    const sent: Buffer[] = [];
    /** Upload `limit` more bytes on `bulk` (stopping early once `enough`); the credits the device granted meanwhile. */
    const pump = async (limit: number, enough: () => boolean = () => false) => {
      credits.length = 0;
      for (let n = 0; n < limit && !enough();) {
        const chunk = randomBytes(64 * 1024);
        sent.push(chunk);
        n += chunk.length;
        if (!bulk.write(chunk)) await new Promise((r) => bulk.once('drain', r));
      }
      return credits.slice();
    };
    // Alone: startup grows the window from the cap, by what each packet brings.
    const alone = await pump(64 * 1024 * 1024, () => credits.some((c) => c > 4 * CAP));
    expect(Math.max(...alone)).toBeGreaterThan(4 * CAP);

    // Another stream gets a few bytes every 10 ms (a helper's clicks): light, so the upload is held to the cap.
    const light = await openStream(broker, targetPort);
    const clicks = setInterval(() => light.write('x'), 10);
    try {
      await new Promise((r) => setTimeout(r, 50));
      await pump(4 * 1024 * 1024); // what was granted before drains
      const shared = await pump(8 * 1024 * 1024);
      expect(Math.max(...shared)).toBeLessThanOrEqual(CAP);
    } finally {
      clearInterval(clicks);
    }
    light.destroy();
    expect(await upload(bulk, Buffer.alloc(0))).toBe(sha256(Buffer.concat(sent)));
  }, 60_000);
});

describe('the broker accepting a helper\'s streams', () => {
  let target: net.Server;
  let targetPort: number;

  beforeAll(async () => {
    ({ server: target, port: targetPort } = await startHashingTarget());
  });
  afterAll(() => { target.close(); });

  /** A direct-tcpip open to the target, as a helper makes them. */
  const openVia = (helper: Client) => new Promise<ClientChannel>((resolve, reject) => {
    helper.forwardOut('127.0.0.1', 0, '127.0.0.1', targetPort, (err, ch) => (err ? reject(err) : resolve(ch)));
  });

  test('over a long helper leg a stream opens with the cap, and 8 MiB uploaded through it arrive intact; on loopback ssh2\'s window stays', async () => {
    const broker = await startBroker();
    const expose = await startExpose(broker, ['--allow', `127.0.0.1:${targetPort}`]);
    const relay = await delayRelay(broker.port, 10);
    try {
      const far = await rawSshClient({ ...broker, port: relay.port }, expose.code);
      const { ch, windows } = await firstCapped(() => openVia(far));
      expect(ch).toBeDefined();
      expect(windows.at(-1)).toBe(CAP);
      const data = randomBytes(8 * 1024 * 1024);
      expect(await upload(ch!, data)).toBe(sha256(data));

      const near = await rawSshClient(broker, expose.code);
      await new Promise((r) => setTimeout(r, 500)); // its leg has been timed by now
      let local = await openVia(near);
      if (announced(local) < MAX_WINDOW) {
        // The broker takes a leg's fastest ping: on a loaded machine its first three can
        // all be over 1 ms. The next one comes 10 s later; loopback must then look near.
        local.destroy();
        await new Promise((r) => setTimeout(r, 10_500));
        local = await openVia(near);
      }
      expect(announced(local)).toBe(MAX_WINDOW);
      local.destroy();
    } finally {
      relay.child.kill();
    }
  }, 60_000);
});

/**
 * Malformed and hostile peers get a clear refusal or are cut off, and nobody else
 * notices: garbage on the SSH port, malformed SOCKS bytes on a helper's local port,
 * a device with an invalid --allow, a raw ssh2 helper that ignores the rules
 * (forbidden direct-tcpip, unknown channel types and stream paths, 500 channels at
 * once), and raw `expose` control channels with bad descriptors. After each attack a
 * victim session on the same broker must still work.
 */
import { randomBytes } from 'node:crypto';
import type { Client, ClientChannel } from 'ssh2';
import {
  curlSocks, rawExchange, rawSshClient, readAll, socksRep, spawnExpose, startBroker, startExpose, startJoin, startTargets,
  type BrokerProc, type ExposeProc, type JoinProc, type Targets,
} from './harness';

let targets: Targets;
let broker: BrokerProc;
/** The victim session: must keep working whatever the hostile peers do. */
let victim: JoinProc;
/** The session the hostile raw helper joins. */
let hostileSession: ExposeProc;

beforeAll(async () => {
  targets = await startTargets();
  broker = await startBroker();
  const v = await startExpose(broker, ['--label', 'victim', '--allow', `127.0.0.1:${targets.httpPort}`]);
  hostileSession = await startExpose(broker, ['--label', 'hostile', '--allow', `127.0.0.1:${targets.httpPort}`]);
  victim = await startJoin(broker, v.code);
}, 60_000);

/** The victim still fetches its target and every long-running process is up. */
async function expectVictimUnharmed(): Promise<void> {
  const r = await curlSocks(victim.socks, `http://127.0.0.1:${targets.httpPort}/`);
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toBe(targets.marker);
  expect(broker.proc.running).toBe(true);
  expect(victim.proc.running).toBe(true);
  expect(hostileSession.proc.running).toBe(true);
}

// ---------------------------------------------------------------------------
// raw ssh2 peers
// ---------------------------------------------------------------------------

/** A raw ssh2 client of `broker`, checking its host key. */
const rawSsh = (username: string): Promise<Client> => rawSshClient(broker, username);

interface OpenFailure {
  reason: number | string;
  message: string;
}

function settle(p: (cb: (err: (Error & { reason?: number }) | undefined, ch: ClientChannel) => void) => void): Promise<ClientChannel | OpenFailure> {
  return new Promise((resolve) => {
    p((err, ch) => (err ? resolve({ reason: err.reason ?? '', message: err.message }) : resolve(ch)));
  });
}

function isFailure(x: ClientChannel | OpenFailure): x is OpenFailure {
  return (x as OpenFailure).message !== undefined && (x as OpenFailure).reason !== undefined && !(x as ClientChannel).write;
}

/**
 * Send a CHANNEL_OPEN of an arbitrary type. ssh2's client API only opens the types
 * it knows, so this goes through its internals (test-only).
 */
function openRawChannelType(client: Client, type: string): Promise<ClientChannel | OpenFailure> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { sendPacket } = require('ssh2/lib/protocol/utils.js') as { sendPacket: (proto: unknown, packet: Buffer) => void };
  const { MESSAGE } = require('ssh2/lib/protocol/constants.js') as { MESSAGE: Record<string, number> };
  /* eslint-enable @typescript-eslint/no-require-imports */
  const c = client as unknown as {
    _chanMgr: { add(cb: unknown): number };
    _protocol: { _packetRW: { write: { allocStart: number; alloc(n: number): Buffer; finalize(b: Buffer): Buffer } } };
  };
  return settle((cb) => {
    const wrapper = Object.assign((err: Error & { reason?: number }, ch: ClientChannel) => cb(err, ch), { type: 'session' });
    const local = c._chanMgr.add(wrapper);
    const rw = c._protocol._packetRW.write;
    const typeLen = Buffer.byteLength(type);
    let p = rw.allocStart;
    const packet = rw.alloc(1 + 4 + typeLen + 12);
    packet[p] = MESSAGE.CHANNEL_OPEN!;
    packet.writeUInt32BE(typeLen, ++p);
    packet.write(type, (p += 4), 'utf8');
    packet.writeUInt32BE(local, (p += typeLen));
    packet.writeUInt32BE(2 * 1024 * 1024, (p += 4));
    packet.writeUInt32BE(32 * 1024, (p += 4));
    sendPacket(c._protocol, rw.finalize(packet));
  });
}

/** HTTP GET / over an open channel; resolves with the response text. */
async function httpOver(ch: ClientChannel): Promise<string> {
  const chunks: Buffer[] = [];
  ch.on('data', (d: Buffer) => chunks.push(d));
  ch.write('GET / HTTP/1.0\r\nHost: target\r\n\r\n');
  // The target closes after its response: that EOF must reach us (our side stays open).
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no EOF within 10 s; got ${JSON.stringify(Buffer.concat(chunks).toString('utf8'))}`)), 10_000);
    const done = () => {
      clearTimeout(t);
      resolve();
    };
    ch.once('end', done);
    ch.once('close', done);
  });
  ch.destroy();
  return Buffer.concat(chunks).toString('utf8');
}

// ---------------------------------------------------------------------------

describe('garbage on the SSH port', () => {
  test.each([
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: broker\r\n\r\n')],
    ['64 KiB of random bytes', randomBytes(64 * 1024)],
    ['an SSH banner followed by junk', Buffer.concat([Buffer.from('SSH-2.0-evil\r\n'), randomBytes(4096)])],
  ])('%s: the broker closes the connection and keeps serving', async (_label, bytes) => {
    const r = await rawExchange('127.0.0.1', broker.port, bytes, 10_000);
    expect(r.closed).toBe(true);
    await expectVictimUnharmed();
  });
});

describe('slow SSH handshakes', () => {
  test('connections that never finish the handshake are cut off after the handshake timeout', async () => {
    const b = await startBroker({ env: { BROKER_SSH_HANDSHAKE_TIMEOUT: '2s' } });
    const t0 = Date.now();
    const [silent, identOnly] = await Promise.all([
      rawExchange('127.0.0.1', b.port, Buffer.alloc(0), 15_000),
      rawExchange('127.0.0.1', b.port, Buffer.from('SSH-2.0-slowloris\r\n'), 15_000),
    ]);
    const ms = Date.now() - t0;
    expect(silent.closed).toBe(true);
    expect(identOnly.closed).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(1500);
    expect(ms).toBeLessThan(10_000);
    await b.proc.waitFor((l) => l.event === 'handshake-timeout', 5000, 'the handshake-timeout log line');
    // Peers that do authenticate are unaffected.
    const e = await startExpose(b, ['--allow', `127.0.0.1:${targets.httpPort}`]);
    const j = await startJoin(b, e.code);
    const r = await curlSocks(j.socks, `http://127.0.0.1:${targets.httpPort}/`);
    expect(r.stdout.trim()).toBe(targets.marker);
  }, 40_000);
});

describe("malformed SOCKS bytes on a helper's local port", () => {
  const cases: Array<[string, Buffer, (data: Buffer) => void]> = [
    ['a SOCKS4 request', Buffer.from('040100507f00000100', 'hex'), (d) => expect(d.length).toBeLessThanOrEqual(2)],
    ['a greeting offering no methods', Buffer.from('0500', 'hex'), (d) => expect(d.subarray(0, 2).toString('hex')).toBe('05ff')],
    ['a greeting offering only username/password', Buffer.from('050102', 'hex'), (d) => expect(d.subarray(0, 2).toString('hex')).toBe('05ff')],
    ['an unknown address type', Buffer.from('050100' + '050100097f0000010050', 'hex'), (d) => expect(d.subarray(0, 4).toString('hex')).toBe('05000508')],
    ['a BIND command', Buffer.from('050100' + '050200017f0000010050', 'hex'), (d) => expect(d.subarray(0, 4).toString('hex')).toBe('05000507')],
    ['a CONNECT to port 0', Buffer.from('050100' + '050100017f0000010000', 'hex'), (d) => expect(d.subarray(0, 4).toString('hex')).toBe('05000501')],
    ['an empty domain name', Buffer.from('050100' + '05010003000050', 'hex'), (d) => expect(d.subarray(0, 4).toString('hex')).toBe('05000501')],
    ['100 KiB of junk', randomBytes(100 * 1024), () => undefined],
  ];

  test.each(cases)('%s: answered or closed, the helper stays up', async (_label, bytes, check) => {
    const { port } = { port: victim.socksPort };
    const r = await rawExchange('127.0.0.1', port, bytes, 12_000);
    expect(r.closed).toBe(true);
    check(r.data);
    await expectVictimUnharmed();
  });

  test('a connection that stops mid-greeting is cut off after the handshake timeout, not kept forever', async () => {
    // Sends half a greeting and then nothing; the local port must not hold it indefinitely.
    const r = await rawExchange('127.0.0.1', victim.socksPort, Buffer.from([5]), 15_000);
    expect(r.closed).toBe(true);
    await expectVictimUnharmed();
  }, 30_000);
});

describe('device with invalid options', () => {
  test.each([
    ['--allow', '10.0.0.0/33'],
    ['--allow', 'printer.lan:99999'],
    ['--deny', 'bad host name!'],
  ])('%s %s: exit 2 with one line naming the rule', async (flag, value) => {
    const p = spawnExpose(broker, [flag, value]);
    expect(await p.waitExit(20_000)).toBe(2);
    const lines = p.stderrLines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^broker-agent expose: bad rule ".*": .*\[BRK_BAD_OPTION\]$/);
    expect(lines[0]).toContain(value);
    expect(p.lines).toContainEqual(expect.objectContaining({ event: 'error', code: 'BRK_BAD_OPTION' }));
  });
});

describe('a raw ssh2 helper that ignores the rules', () => {
  let raw: Client;

  beforeAll(async () => {
    raw = await rawSsh(hostileSession.code);
  });

  test('control: an allowed direct-tcpip open works for it too', async () => {
    const ch = await settle((cb) => raw.forwardOut('127.0.0.1', 1, '127.0.0.1', targets.httpPort, cb));
    expect(isFailure(ch)).toBe(false);
    expect(await httpOver(ch as ClientChannel)).toContain(targets.marker);
  });

  test('direct-tcpip to a forbidden destination is rejected: administratively prohibited, BRK_POLICY_DENIED', async () => {
    const res = await settle((cb) => raw.forwardOut('127.0.0.1', 1, '127.0.0.1', targets.halfClosePort, cb));
    expect(isFailure(res)).toBe(true);
    expect(res).toMatchObject({ reason: 1, message: expect.stringContaining('BRK_POLICY_DENIED') });
  });

  test('in-band SOCKS to a forbidden destination answers 0x02', async () => {
    const ch = await settle((cb) => raw.openssh_forwardOutStreamLocal('socks5@remote-assist', cb));
    expect(isFailure(ch)).toBe(false);
    const c = ch as ClientChannel;
    const got = readAll(c as never, 10_000);
    c.write(Buffer.concat([Buffer.from('050100', 'hex'), Buffer.from('050100017f000001', 'hex'), Buffer.from([targets.halfClosePort >> 8, targets.halfClosePort & 255])]));
    const r = await got;
    expect(r.data.subarray(0, 2).toString('hex')).toBe('0500');
    expect(r.data[3]).toBe(0x02);
  });

  test('an unknown direct-streamlocal path is rejected', async () => {
    const res = await settle((cb) => raw.openssh_forwardOutStreamLocal('/var/run/docker.sock', cb));
    expect(isFailure(res)).toBe(true);
    expect(res).toMatchObject({ reason: 1, message: expect.stringMatching(/unknown stream/) });
  });

  test('an unknown channel type is rejected (UNKNOWN_CHANNEL_TYPE)', async () => {
    const res = await openRawChannelType(raw, 'evil@example.com');
    expect(isFailure(res)).toBe(true);
    expect((res as OpenFailure).reason).toBe(3);
  });

  test('a malformed CHANNEL_OPEN cuts off only that connection', async () => {
    // An `x11` open without its originator fields does not parse: a protocol error.
    const other = await rawSsh(hostileSession.code);
    const closed = new Promise<void>((resolve) => other.once('close', () => resolve()));
    other.on('error', () => undefined);
    void openRawChannelType(other, 'x11');
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('not disconnected within 10 s')), 10_000).unref())]);
    await broker.proc.waitFor((l) => /Malformed CHANNEL_OPEN/.test(String(l.error)), 5000, 'the protocol error in the broker log');
    // The first raw helper's connection is untouched.
    const ch = await settle((cb) => raw.forwardOut('127.0.0.1', 1, '127.0.0.1', targets.httpPort, cb));
    expect(isFailure(ch)).toBe(false);
    (ch as ClientChannel).destroy();
    await expectVictimUnharmed();
  });

  test('a helper may not ask for a reverse tunnel (tcpip-forward is refused)', async () => {
    const err = await new Promise<Error | undefined>((resolve) => raw.forwardIn('127.0.0.1', 0, (e) => resolve(e ?? undefined)));
    expect(err).toBeInstanceOf(Error);
  });

  test('500 channel opens at once: every open is answered, the broker and the other session carry on', async () => {
    const N = 500;
    const started = Date.now();
    // Don't let the victim's check wait for the flood: run it while the opens are in flight.
    const opens = Array.from({ length: N }, (_, i) =>
      settle((cb) => (i % 2 === 0
        ? raw.forwardOut('127.0.0.1', 1, '127.0.0.1', targets.httpPort, cb)
        : raw.openssh_forwardOutStreamLocal('socks5@remote-assist', cb))));
    const during = curlSocks(victim.socks, `http://127.0.0.1:${targets.httpPort}/`);
    let timer: NodeJS.Timeout | undefined;
    const results = await Promise.race([
      Promise.all(opens),
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`not all ${N} opens were answered within 60 s`)), 60_000); }),
    ]).finally(() => clearTimeout(timer));
    const ms = Date.now() - started;
    const ok = results.filter((r) => !isFailure(r)) as ClientChannel[];
    const failed = results.filter(isFailure);
    console.log(`${N} concurrent opens answered in ${ms} ms: ${ok.length} opened, ${failed.length} refused`);
    expect(ok.length + failed.length).toBe(N);
    const d = await during;
    expect(d.code).toBe(0);
    expect(d.stdout.trim()).toBe(targets.marker);
    for (const ch of ok) ch.destroy();
    await expectVictimUnharmed();
  }, 90_000);

  afterAll(() => raw?.end());
});

describe('raw expose control channels with bad input', () => {
  /** Connect as `expose`, bind a reverse tunnel (unless told not to), send `line`, return the first event. */
  async function exposeWith(line: string, opts: { tunnel?: boolean } = {}): Promise<Record<string, unknown>> {
    const c = await rawSsh('expose');
    if (opts.tunnel !== false) {
      await new Promise<void>((resolve, reject) => c.forwardIn('127.0.0.1', 0, (err) => (err ? reject(err) : resolve())));
    }
    const ch = await new Promise<ClientChannel>((resolve, reject) => c.exec('expose', (err, s) => (err ? reject(err) : resolve(s))));
    const got = readAll(ch as never, 10_000);
    ch.write(`${line}\n`);
    const r = await got;
    c.end();
    const first = r.data.toString('utf8').split('\n')[0]!;
    return JSON.parse(first) as Record<string, unknown>;
  }

  const request = (descriptor: unknown) => JSON.stringify({ type: 'expose', version: 1, descriptor });

  test('an oversized descriptor → error event BRK_BAD_DESCRIPTOR', async () => {
    const ev = await exposeWith(request({ version: 1, label: 'x'.repeat(16_500), allow: ['127.0.0.1:9'] }));
    expect(ev).toMatchObject({ event: 'error', code: 'BRK_BAD_DESCRIPTOR' });
    expect(String(ev.message)).toMatch(/limit/);
  });

  test('a descriptor with an unknown key → BRK_BAD_DESCRIPTOR naming the key', async () => {
    const ev = await exposeWith(request({ version: 1, allow: [], __proto__x: 1 }));
    expect(ev).toMatchObject({ event: 'error', code: 'BRK_BAD_DESCRIPTOR' });
    expect(String(ev.message)).toContain('__proto__x');
  });

  test('a descriptor with an invalid rule → BRK_BAD_DESCRIPTOR naming the field', async () => {
    const ev = await exposeWith(request({ version: 1, allow: ['10.0.0.0/8', '10.0.0.0/33'] }));
    expect(ev).toMatchObject({ event: 'error', code: 'BRK_BAD_DESCRIPTOR' });
    expect(String(ev.message)).toContain('descriptor.allow[1]');
  });

  test('a control line over the size limit → BRK_BAD_REQUEST', async () => {
    const ev = await exposeWith(request({ version: 1, label: 'x'.repeat(40_000) }));
    expect(ev).toMatchObject({ event: 'error', code: 'BRK_BAD_REQUEST' });
  });

  test('not JSON → BRK_BAD_REQUEST', async () => {
    const ev = await exposeWith('{this is not json');
    expect(ev).toMatchObject({ event: 'error', code: 'BRK_BAD_REQUEST' });
  });

  test('no reverse tunnel first → BRK_BAD_REQUEST saying so', async () => {
    const ev = await exposeWith(request({ version: 1, allow: ['127.0.0.1:9'] }), { tunnel: false });
    expect(ev).toMatchObject({ event: 'error', code: 'BRK_BAD_REQUEST' });
    expect(String(ev.message)).toMatch(/reverse tunnel/);
  });

  test('after all of that the broker still serves everyone', async () => {
    await expectVictimUnharmed();
    expect(await socksRep(victim.socks, '127.0.0.1', targets.halfClosePort)).toBe(0x02);
  });
});

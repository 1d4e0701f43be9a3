/**
 * The broker's side of named opens (`protocol/named-open.ts`), against a raw ssh2
 * agent that announces them and answers each open as the test says, with a real
 * helper (`broker-agent join`) and raw SOCKS5 clients:
 * - the session starts with probes of the device leg and no pre-opened channels;
 * - a helper's stream arrives as one open naming the helper and the target, with the
 *   cap's window rather than ssh2's 2 MiB, and a download larger than it arrives intact;
 * - an agent that sends past its window gets its stream closed, not buffered;
 * - the agent's refusal (`BRK_CODE: reason`) reaches the helper as the exact SOCKS
 *   reply, and a refusal without a description as a general failure;
 * - an agent that never answers costs the helper BRK_STREAM_OPEN_TIMEOUT, not more,
 *   and a confirmation that comes later is closed by the broker.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Client, ClientChannel } from 'ssh2';
import { SSH_IDENT } from '../../src/protocol/constants';
import { NAMED_OPEN_FEATURE } from '../../src/protocol/named-open';
import { OpenFailure } from '../../src/errors';
import { rejectChannel } from '../../src/transport/open-failure';
import { rawSshClient, socksConnect, socksRep, startBroker, startJoin, type BrokerProc, type JoinProc } from './harness';

/** One `forwarded-tcpip` open as the raw agent saw it, with its answers. */
interface SeenOpen {
  srcIP: string;
  srcPort: number;
  accept: () => ClientChannel;
  reject: () => void;
}

const OPEN_TIMEOUT_MS = 1500;

let broker: BrokerProc;
let agent: Client;
let helper: JoinProc;
const opens: SeenOpen[] = [];
/** How the raw agent answers the next connect opens (probes are refused at once, as our agent does). */
let answer: (open: SeenOpen) => void = () => {};

beforeAll(async () => {
  broker = await startBroker({ env: { BROKER_STREAM_OPEN_TIMEOUT: String(OPEN_TIMEOUT_MS) }, args: ['--metrics', '127.0.0.1:0'] });
  agent = await rawSshClient(broker, 'expose', { ident: `${SSH_IDENT} ${NAMED_OPEN_FEATURE}` });
  agent.on('tcp connection', (info, accept, reject) => {
    const open = { srcIP: info.srcIP, srcPort: info.srcPort, accept, reject };
    opens.push(open);
    if (info.srcIP === 'remote-assist:probe') rejectChannel(agent, reject, OpenFailure.CONNECT_FAILED, 'BRK_BAD_REQUEST: probe');
    else answer(open);
  });
  await new Promise<void>((resolve, reject) => agent.forwardIn('127.0.0.1', 0, (err) => (err ? reject(err) : resolve())));
  const control = await new Promise<ClientChannel>((resolve, reject) => agent.exec('expose', (err, ch) => (err ? reject(err) : resolve(ch))));
  const session = await new Promise<Record<string, unknown>>((resolve) => {
    let text = '';
    control.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve(JSON.parse(text.split('\n')[0]!) as Record<string, unknown>);
    });
    control.write(`${JSON.stringify({ type: 'expose', version: 1, descriptor: { version: 1, allow: ['*:631'] } })}\n`);
  });
  expect(session).toMatchObject({ event: 'session' });
  helper = await startJoin(broker, String(session.code));
}, 60_000);

/** Wait until `pred` holds (bounded). */
async function until(pred: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('the session starts with three probes of the device leg and no channels opened in advance', async () => {
  await until(() => opens.length >= 3);
  await new Promise((r) => setTimeout(r, 300)); // a pool would have opened its channels by now
  expect(opens.map((o) => `${o.srcIP}:${o.srcPort}`)).toEqual(['remote-assist:probe:0', 'remote-assist:probe:0', 'remote-assist:probe:0']);
  const created = broker.proc.lines.find((l) => l.event === 'session-created');
  expect(created?.deviceStreams).toBe('named-open');
});

test("a helper's stream is one open naming the helper and the target; bytes flow once the agent accepts", async () => {
  answer = (open) => {
    const ch = open.accept();
    ch.on('data', (d: Buffer) => ch.write(Buffer.from(d.toString().toUpperCase())));
  };
  const before = opens.length;
  const r = await socksConnect(helper.socks, 'printer.lan', 631);
  expect(r.rep).toBe(0x00);
  const connects = opens.slice(before).filter((o) => o.srcIP.startsWith('remote-assist:connect:'));
  expect(connects.map((o) => `${o.srcIP}:${o.srcPort}`)).toEqual([expect.stringMatching(/^remote-assist:connect:\d+:printer\.lan:631$/)]);
  const echoed = new Promise<string>((resolve) => r.socket.once('data', (d: Buffer) => resolve(d.toString())));
  r.socket.write('hello');
  expect(await echoed).toBe('HELLO');
  r.socket.destroy();
});

test("a stream opens with the cap's window, not ssh2's 2 MiB, and 8 MiB from the device arrive intact through it", async () => {
  const payload = randomBytes(8 * 1024 * 1024);
  let opening = 0;
  answer = (open) => {
    const ch = open.accept();
    // The window the broker announced in its open (ssh2 keeps it as the sender's credit).
    opening = (ch as unknown as { outgoing: { window: number } }).outgoing.window;
    ch.end(payload);
  };
  const r = await socksConnect(helper.socks, 'printer.lan', 631);
  expect(r.rep).toBe(0x00);
  const got: Buffer[] = [r.rest]; // what arrived with the SOCKS reply
  r.socket.on('data', (d: Buffer) => got.push(d));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`stalled after ${Buffer.concat(got).length} bytes`)), 30_000);
    r.socket.once('end', () => { clearTimeout(t); resolve(); });
  });
  r.socket.destroy();
  // Nothing delivered yet on this connection: the cap (BROKER_STREAM_WINDOW's 64 KiB default).
  expect(opening).toBe(64 * 1024);
  const all = Buffer.concat(got);
  expect(all.length).toBe(payload.length);
  expect(all.equals(payload)).toBe(true); // ssh2's view of the window matched the agent's: nothing dropped
}, 60_000);

test('an agent that sends past its window: the broker closes the stream instead of buffering it', async () => {
  let channel: ClientChannel | undefined;
  answer = (open) => {
    channel = open.accept();
    channel.resume(); // 'close' follows 'end', which needs the stream read
  };
  const r = await socksConnect(helper.socks, 'printer.lan', 631);
  expect(r.rep).toBe(0x00);
  r.socket.pause(); // the helper's client reads nothing: what the broker accepts, it must hold
  const closed = new Promise<void>((resolve) => channel!.once('close', () => resolve()));
  const helperEnded = new Promise<void>((resolve) => r.socket.once('end', () => resolve()));
  // Packets of 20,000 bytes straight to the protocol, ignoring the window: once the
  // helper's side is full the broker stops granting, and ssh2's own check drops a packet
  // only when the window is exactly 0, which these never make it.
  const proto = (agent as unknown as { _protocol: { channelData(id: number, data: Buffer): void } })._protocol;
  const id = (channel as unknown as { outgoing: { id: number } }).outgoing.id;
  const packet = Buffer.alloc(20_000, 7);
  let sent = 0;
  let isClosed = false;
  void closed.then(() => { isClosed = true; });
  for (let i = 0; i < 4000 && !isClosed; i++) {
    proto.channelData(id, packet);
    sent += packet.length;
    if (i % 100 === 99) await new Promise((res) => setTimeout(res, 5));
  }
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error(`the broker kept the stream open after ${sent} bytes past a 64 KiB window`)), 5000))]);
  // What the broker accepted before still reaches the helper, then the stream ends.
  let got = 0;
  r.socket.on('data', (d: Buffer) => { got += d.length; });
  r.socket.resume();
  await Promise.race([helperEnded, new Promise((_, reject) => setTimeout(() => reject(new Error("the helper's stream did not end")), 10_000))]);
  expect(got).toBeLessThan(sent); // what came after the overrun was dropped
  r.socket.destroy();
  // The operator can tell why the stream ended.
  await until(() => broker.proc.lines.some((l) => l.event === 'stream-overrun'));
  expect(broker.proc.lines.find((l) => l.event === 'stream-overrun')).toMatchObject({ level: 'warn', dest: 'printer.lan:631' });
  // And a Prometheus counter can alert on it.
  const metrics = String(broker.proc.lines.find((l) => l.event === 'listening')!.metrics);
  const text = await new Promise<string>((resolve, reject) => {
    http.get(`http://${metrics}/metrics`, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  expect(text).toContain('broker_stream_overruns_total{peer="device"} 1');
});

test.each([
  ['BRK_HOST_UNREACHABLE', OpenFailure.CONNECT_FAILED, 0x04],
  ['BRK_CONN_REFUSED', OpenFailure.CONNECT_FAILED, 0x05],
  ['BRK_POLICY_DENIED', OpenFailure.ADMINISTRATIVELY_PROHIBITED, 0x02],
  ['BRK_NET_UNREACHABLE', OpenFailure.CONNECT_FAILED, 0x03],
])('the agent refuses with %s (open failure reason %i) → the helper gets exactly SOCKS reply %i', async (code, reason, rep) => {
  answer = (open) => rejectChannel(agent, open.reject, reason, `${code}: printer.lan:631: as the device saw it`);
  expect(await socksRep(helper.socks, 'printer.lan', 631)).toBe(rep);
});

test('a refusal without a description (not our agent) is a general failure, 0x01', async () => {
  answer = (open) => open.reject();
  expect(await socksRep(helper.socks, 'printer.lan', 631)).toBe(0x01);
});

test('an agent that never answers: 0x06 after the open timeout; a late confirmation is closed by the broker', async () => {
  let late: SeenOpen | undefined;
  answer = (open) => { late = open; };
  const t0 = Date.now();
  expect(await socksRep(helper.socks, 'printer.lan', 631, { timeoutMs: 10_000 })).toBe(0x06);
  const ms = Date.now() - t0;
  expect(ms).toBeGreaterThanOrEqual(OPEN_TIMEOUT_MS - 100);
  expect(ms).toBeLessThan(OPEN_TIMEOUT_MS + 3000);
  expect(late).toBeDefined();
  const ch = late!.accept();
  ch.resume(); // 'close' follows 'end', which needs the stream read
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the broker kept a stream nobody waits for')), 5000);
    ch.once('close', () => { clearTimeout(t); resolve(); });
  });
});

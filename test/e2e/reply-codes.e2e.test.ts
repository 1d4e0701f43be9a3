/**
 * The exact SOCKS5 reply a helper's local client gets is the one the device saw:
 * 0x05 refused, 0x02 not allowed (policy, including the loopback spelling tricks),
 * 0x03 network unreachable, 0x04 host unreachable (unknown name, on-link host that
 * does not answer ARP), 0x06 timeout. Checked with an independent raw SOCKS5
 * client (the REP byte itself) and with real curl (`... (N)` in its error text).
 * The loopback cases run over both device-leg paths: named opens (the device refuses
 * the open with the outcome) and SOCKS5 on pre-opened channels (older agents, stock
 * `ssh -R`). The unreachable cases run the device inside a network namespace the test
 * builds.
 */
import {
  closedPort, createTopology, curlSocks, curlSocksRep, run, socksConnect, socksRep, startBroker, startExpose, startJoin, startTargets,
  type BrokerProc, type JoinProc, type Targets,
} from './harness';

/** The path, the agent's environment, and what the broker logs for such a session. */
const deviceLegs: Array<[string, Record<string, string>, string]> = [
  ['named opens', {}, 'named-open'],
  ['SOCKS5 on pre-opened channels', { BROKER_NAMED_OPENS: '0' }, 'socks'],
];

describe.each(deviceLegs)('on loopback, device leg: %s', (_leg, env, deviceStreams) => {
  let targets: Targets;
  let broker: BrokerProc;
  let refusedPort: number;
  /** Device that names the target and a closed port explicitly. */
  let explicit: JoinProc;
  /** Device whose rules never name loopback (any host on the target's port, and a 198.18/15 range). */
  let nonLoopback: JoinProc;

  beforeAll(async () => {
    targets = await startTargets();
    refusedPort = await closedPort();
    broker = await startBroker();
    const a = await startExpose(broker, ['--allow', `127.0.0.1:${targets.httpPort}`, '--allow', `127.0.0.1:${refusedPort}`], { env });
    const b = await startExpose(broker, ['--allow', `*:${targets.httpPort}`, '--allow', '198.18.0.0/15'], { env });
    [explicit, nonLoopback] = await Promise.all([startJoin(broker, a.code), startJoin(broker, b.code)]);
  }, 60_000);

  test('the broker uses that path to both devices', () => {
    const created = broker.proc.lines.filter((l) => l.event === 'session-created');
    expect(created.map((l) => l.deviceStreams)).toEqual([deviceStreams, deviceStreams]);
  });

  test('control: an allowed, listening destination succeeds (0x00)', async () => {
    const r = await socksConnect(explicit.socks, '127.0.0.1', targets.httpPort);
    expect(r.rep).toBe(0x00);
    r.socket.destroy();
  });

  test('allowed port with nothing listening → 0x05 connection refused', async () => {
    expect(await socksRep(explicit.socks, '127.0.0.1', refusedPort)).toBe(0x05);
    const c = await curlSocks(explicit.socks, `http://127.0.0.1:${refusedPort}/`);
    expect(c.code).toBe(97); // curl: SOCKS proxy handshake/reply failure
    expect(curlSocksRep(c)).toBe(5);
    const ev = await explicit.proc.waitFor((l) => l.event === 'stream' && l.target === `127.0.0.1:${refusedPort}`, 5000, 'the stream event');
    expect(ev.rep).toBe(5);
    expect(String(ev.reason)).toMatch(/refused/);
  });

  test('a port the policy does not allow → 0x02 not allowed by ruleset', async () => {
    const other = await closedPort();
    expect(await socksRep(explicit.socks, '127.0.0.1', other)).toBe(0x02);
    const c = await curlSocks(explicit.socks, `http://127.0.0.1:${other}/`);
    expect(c.code).toBe(97);
    expect(curlSocksRep(c)).toBe(2);
  });

  const tricks: Array<[string, string, 'ipv4' | 'ipv6' | 'domain']> = [
    ['plain 127.0.0.1', '127.0.0.1', 'ipv4'],
    ['hex octets 0x7f.1', '0x7f.1', 'domain'],
    ['decimal 2130706433', '2130706433', 'domain'],
    ['short 127.1', '127.1', 'domain'],
    ['IPv4-mapped ::ffff:127.0.0.1 as an address', '::ffff:127.0.0.1', 'ipv6'],
    ['IPv4-mapped ::ffff:127.0.0.1 as a name', '::ffff:127.0.0.1', 'domain'],
    ['localhost', 'localhost', 'domain'],
    ['LOCALHOST.', 'LOCALHOST.', 'domain'],
    ['IPv6 loopback ::1', '::1', 'ipv6'],
    ['unspecified 0.0.0.0', '0.0.0.0', 'ipv4'],
  ];

  test.each(tricks)('loopback trick %s → 0x02 when only non-loopback rules are given', async (_label, host, atyp) => {
    // The target really listens on 127.0.0.1 at this port and `*:PORT` is allowed: only the
    // loopback rule can stop it.
    expect(await socksRep(nonLoopback.socks, host, targets.httpPort, { atyp })).toBe(0x02);
  });

  test('curl sees the same 0x02 for the loopback tricks', async () => {
    const urls = ['http://0x7f.1', 'http://2130706433', 'http://[::ffff:127.0.0.1]', 'http://localhost'].map((u) => `${u}:${targets.httpPort}/`);
    for (const url of urls) {
      const c = await curlSocks(nonLoopback.socks, url);
      expect({ url, code: c.code, rep: curlSocksRep(c) }).toEqual({ url, code: 97, rep: 2 });
      expect(c.stdout).not.toContain(targets.marker);
    }
  });

  test('the same target is reachable through the device that names it explicitly', async () => {
    const c = await curlSocks(explicit.socks, `http://127.0.0.1:${targets.httpPort}/`);
    expect(c.code).toBe(0);
    expect(c.stdout.trim()).toBe(targets.marker);
  });
});

describe('inside network namespaces (device network errors)', () => {
  let join: JoinProc;

  beforeAll(async () => {
    // hosts: a name that the device resolves to its own loopback (DNS-rebinding style).
    const topo = await createTopology({ hosts: ['127.0.0.1 rebind.lan'] });
    // Packets for 198.18.5.0/24 go to the LAN host, which does not forward them and
    // sends nothing back: a dial there can only time out. (All inside our namespaces.)
    await run('ip', ['-n', topo.dev, 'route', 'add', '198.18.5.0/24', 'via', topo.lanAddr]);
    const broker = await startBroker({ host: topo.rootAddr });
    const expose = await startExpose(broker, [
      '--allow', '198.18.0.0/24:8080', '--allow', '198.19.0.0/16:8080', '--allow', '198.18.5.0/24:8080',
      '--allow', 'rebind.lan:8080', '--dial-timeout', '5s',
    ], { netns: topo.dev });
    join = await startJoin(broker, expose.code);
  }, 60_000);

  test('no route on the device → 0x03 network unreachable', async () => {
    const t0 = Date.now();
    expect(await socksRep(join.socks, '198.19.0.1', 8080)).toBe(0x03);
    expect(Date.now() - t0).toBeLessThan(4000);
    const c = await curlSocks(join.socks, 'http://198.19.0.1:8080/');
    expect(curlSocksRep(c)).toBe(3);
  });

  test('unknown name on the device → 0x04 host unreachable, fast', async () => {
    const t0 = Date.now();
    expect(await socksRep(join.socks, 'nosuchhost.lan', 8080)).toBe(0x04);
    expect(Date.now() - t0).toBeLessThan(4000);
    const ev = await join.proc.waitFor((l) => l.event === 'stream' && l.target === 'nosuchhost.lan:8080', 5000, 'the stream event');
    expect(String(ev.reason)).toMatch(/resolve/);
  });

  test('on-link host that never answers ARP → 0x04 host unreachable; silent drop → 0x06 timeout', async () => {
    const [arp, drop] = await Promise.all([
      socksRep(join.socks, '198.18.0.99', 8080, { timeoutMs: 30_000 }),
      (async () => {
        const t0 = Date.now();
        const rep = await socksRep(join.socks, '198.18.5.5', 8080, { timeoutMs: 30_000 });
        return { rep, ms: Date.now() - t0 };
      })(),
    ]);
    expect(arp).toBe(0x04);
    expect(drop.rep).toBe(0x06);
    expect(drop.ms).toBeGreaterThanOrEqual(4500); // the device's --dial-timeout 5s, not something earlier
    expect(drop.ms).toBeLessThan(15_000);
  }, 40_000);

  test('a name the device resolves to loopback is refused by the device itself → 0x02', async () => {
    // The broker's early check passes (the name rule matches); only the agent's check on
    // the address it would dial can refuse.
    expect(await socksRep(join.socks, 'rebind.lan', 8080)).toBe(0x02);
    const ev = await join.proc.waitFor((l) => l.event === 'stream' && l.target === 'rebind.lan:8080', 5000, 'the stream event');
    expect(String(ev.reason)).toMatch(/loopback/);
  });
});

/**
 * Every example in examples/ runs here against a real broker, device and helper, so
 * the examples cannot rot: curl.sh, node-socks-agent.js, diagnostics.ts (the
 * programmatic API) and ssh-jump.sh (stock OpenSSH through the broker to an SSH
 * server on the "device network"). browser.md is exercised by browser.e2e.test.ts.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Server as SshServer } from 'ssh2';
import { expose as apiExpose, join as apiJoin, serve as apiServe, type BrokerError } from '../../src/index';
import {
  REPO, Scope, cleanEnv, closedPort, curl, deviceStreams, listen, probe, run, startBroker, startExpose, startHttpTarget, startJoin,
  tempDir, type BrokerInfo, type ExposeInfo, type JoinInfo,
} from './tools-harness';
import { generateIdentity } from '../../src/transport/keys';

jest.setTimeout(60_000);

const file = new Scope();
let dir: string;
let broker: BrokerInfo;
let expose: ExposeInfo;
let join: JoinInfo;
let web: Awaited<ReturnType<typeof startHttpTarget>>;
let sshPort: number;
let refusedPort: number;
let deniedPort: number;
const sshSeen: Array<{ user: string; command: string }> = [];

async function startSshServer(): Promise<number> {
  const hostKey = { private: generateIdentity().privateKey }; // re-parsed: ssh2's generator rarely emits a key it cannot load
  const sockets = new Set<net.Socket>();
  const server = new SshServer({ hostKeys: [hostKey.private] }, (client) => {
    let user = '';
    client.on('error', () => {});
    client.on('authentication', (ctx) => {
      user = ctx.username;
      if (ctx.method === 'publickey') ctx.accept(); // any key: this is a stand-in for a device-side sshd
      else ctx.reject(['publickey']);
    });
    client.on('ready', () => {
      client.on('session', (accept) => {
        const session = accept();
        session.on('exec', (acceptExec, _reject, info) => {
          const ch = acceptExec();
          sshSeen.push({ user, command: info.command });
          const m = /^echo (.*)$/.exec(info.command);
          if (m) { ch.write(`${m[1]}\n`); ch.exit(0); } else { ch.stderr.write(`unsupported: ${info.command}\n`); ch.exit(127); }
          ch.end();
        });
      });
    });
  });
  server.on('connection', (s: net.Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
  const port = await listen(server as unknown as net.Server);
  file.defer(() => { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(() => r(undefined))); });
  return port;
}

beforeAll(async () => {
  dir = tempDir();
  file.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  web = await startHttpTarget(file, 'example-target');
  sshPort = await startSshServer();
  refusedPort = await closedPort();
  deniedPort = (await startHttpTarget(file, 'never')).port;
  broker = await startBroker(file, dir);
  const kb = path.join(dir, 'known_brokers');
  expose = await startExpose(file, broker, kb, [`127.0.0.1:${web.port}`, `127.0.0.1:${sshPort}`, `127.0.0.1:${refusedPort}`]);
  join = await startJoin(file, broker, expose.code, kb);
}, 60_000);

afterAll(async () => {
  await file.cleanup();
}, 30_000);

describe('examples/curl.sh', () => {
  const curlSh = (url: string) => run(path.join(REPO, 'examples', 'curl.sh'), [url], { env: cleanEnv({ SOCKS: join.socks, HTTP_PROXY_ADDR: join.http }) });

  test('fetches the page through SOCKS and through the HTTP proxy', async () => {
    const target = `127.0.0.1:${web.port}`;
    const before = deviceStreams(expose, target).length;
    const r = await curlSh(`http://${target}/curl-example`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('example-target /curl-example\n'.repeat(2));
    expect(web.requests.filter((q) => q === 'GET /curl-example')).toHaveLength(2);
    expect(deviceStreams(expose, target).length - before).toBeGreaterThanOrEqual(1);
  });

  test('a denied destination fails the script (curl --fail through SOCKS)', async () => {
    const r = await curlSh(`http://127.0.0.1:${deniedPort}/`);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
  });

  test('without a URL it prints its usage', async () => {
    const r = await run(path.join(REPO, 'examples', 'curl.sh'), [], { env: cleanEnv() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/usage: examples\/curl\.sh URL/);
  });
});

describe('examples/node-socks-agent.js', () => {
  const nodeExample = (url: string) => run(process.execPath, [path.join(REPO, 'examples', 'node-socks-agent.js'), url], { env: cleanEnv({ SOCKS_URL: String(join.ready.socksUrl) }) });

  test('fetches the page through the SOCKS port (socks5h)', async () => {
    const body = 'example-target /node-example\n';
    const r = await nodeExample(`http://127.0.0.1:${web.port}/node-example`);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`200 ${body.length} bytes\n${body}`);
    expect(web.requests).toContain('GET /node-example');
  });

  test('an HTTP error status exits 1', async () => {
    const r = await nodeExample(`http://127.0.0.1:${web.port}/missing`);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^404 /);
  });

  test('a refused destination exits 1 with the reason', async () => {
    const r = await nodeExample(`http://127.0.0.1:${refusedPort}/`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/request failed: .*(refused|Socks)/i);
  });
});

describe('examples/diagnostics.ts (programmatic API)', () => {
  const diagnostics = (args: string[]) => run(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join('examples', 'diagnostics.ts'), ...args], {
    env: cleanEnv({ KNOWN_BROKERS: path.join(dir, 'known_brokers_api'), TS_NODE_PROJECT: path.join(REPO, 'tsconfig.json') }),
    timeoutMs: 45_000,
  });

  test('all checks pass: exit 0 with one ok line per check', async () => {
    const checks = [`tcp://127.0.0.1:${web.port}`, `http://127.0.0.1:${web.port}/api-check`, `tcp://127.0.0.1:${sshPort}`];
    const r = await diagnostics([expose.code, broker.ssh, ...checks]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^joined session; proxy socks5h:\/\/127\.0\.0\.1:\d+$/);
    expect(lines).toHaveLength(4);
    expect(lines[1]).toMatch(new RegExp(`^tcp://127\\.0\\.0\\.1:${web.port}\\s+ok\\s+connect [\\d.]+ ms$`));
    expect(lines[2]).toMatch(/\s+ok\s+200 connect [\d.]+ ms, first byte [\d.]+ ms$/);
    expect(lines[3]).toMatch(/\s+ok\s+connect/);
    expect(web.requests).toContain('GET /api-check');
    expect(fs.readFileSync(path.join(dir, 'known_brokers_api'), 'utf8')).toContain(broker.fingerprint);
  });

  test('a failing check: exit 1 and the exact reason', async () => {
    const r = await diagnostics([expose.code, broker.ssh, `tcp://127.0.0.1:${refusedPort}`, `tcp://127.0.0.1:${deniedPort}`]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`tcp://127\\.0\\.0\\.1:${refusedPort}\\s+FAIL BRK_CONN_REFUSED: `));
    expect(r.stdout).toMatch(new RegExp(`tcp://127\\.0\\.0\\.1:${deniedPort}\\s+FAIL BRK_POLICY_DENIED: `));
  });

  test('usage error: exit 2; wrong session code: exit 3', async () => {
    const usage = await diagnostics([]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/usage: diagnostics\.ts/);
    const wrong = await diagnostics(['0000000-0000000-0000000', broker.ssh, `tcp://127.0.0.1:${web.port}`]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/BRK_BAD_CODE/);
  });
});

describe('examples/ssh-jump.sh (stock OpenSSH, ProxyCommand through the broker)', () => {
  test('runs a command on an SSH server that only the device reaches', async () => {
    const key = path.join(dir, 'id_ed25519');
    const kg = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'e2e-helper', '-f', key]);
    expect(kg.code).toBe(0);
    const sshOpts = ['-F', '/dev/null', '-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'];
    const before = deviceStreams(expose, `127.0.0.1:${sshPort}`).length;
    const r = await run(path.join(REPO, 'examples', 'ssh-jump.sh'), [...sshOpts, '-p', String(sshPort), 'root@127.0.0.1', 'echo', 'jumped'], {
      env: cleanEnv({ BROKER: broker.host, PORT: String(broker.port), CODE: expose.code, SSH_OPTS: sshOpts.join(' ') }),
      timeoutMs: 30_000,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('jumped\n');
    expect(sshSeen).toContainEqual({ user: 'root', command: 'echo jumped' });
    expect(deviceStreams(expose, `127.0.0.1:${sshPort}`).length - before).toBe(1);
  });

  test('without arguments it prints its usage', async () => {
    const r = await run(path.join(REPO, 'examples', 'ssh-jump.sh'), [], { env: cleanEnv({ BROKER: broker.host, CODE: expose.code }) });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/usage: examples\/ssh-jump\.sh \[ssh options\] USER@HOST/);
  });
});

describe('the package root API that examples/diagnostics.ts builds on (serve, expose, join in-process)', () => {
  test('join gives socksUrl, httpProxyUrl, descriptor and events; close() leaves nothing listening', async () => {
    const scope = new Scope();
    try {
      const broker2 = await apiServe({ host: '127.0.0.1', port: 0, dataDir: path.join(dir, 'api-broker'), checkIntervalMs: 1000 });
      scope.defer(() => broker2.close());
      const addr = `127.0.0.1:${broker2.address().port}`;
      const device = await apiExpose({ broker: addr, allow: [`127.0.0.1:${web.port}`], label: 'api-device', knownBrokersFile: path.join(dir, 'kb-api-device') });
      scope.defer(() => device.close());
      expect(device.code).toMatch(/^[0-9a-z]{7}-[0-9a-z]{7}-[0-9a-z]{7}$/);
      const deviceStreamsSeen: string[] = [];
      device.events.on('stream-opened', (e) => deviceStreamsSeen.push(e.target));

      const s = await apiJoin({ code: device.code, broker: addr, fingerprint: broker2.fingerprint });
      scope.defer(() => s.close());
      const ended: BrokerError[] = [];
      s.events.on('ended', (e) => ended.push(e));
      const httpStreams: unknown[] = [];
      s.events.on('http-stream', (e) => httpStreams.push(e));
      expect(s.socksUrl).toMatch(/^socks5h:\/\/127\.0\.0\.1:\d+$/);
      expect(s.httpProxyUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(s.descriptor).toMatchObject({ version: 1, label: 'api-device', allow: [`127.0.0.1:${web.port}`] });

      const viaSocks = await curl(['--proxy', s.socksUrl, `http://127.0.0.1:${web.port}/api-socks`]);
      expect(viaSocks.stdout).toBe('example-target /api-socks\n');
      const viaHttp = await curl(['-x', s.httpProxyUrl!, `http://127.0.0.1:${web.port}/api-http`]);
      expect(viaHttp.stdout).toBe('example-target /api-http\n');
      expect(httpStreams).toContainEqual({ target: `127.0.0.1:${web.port}`, method: 'GET', status: 200 });
      expect(deviceStreamsSeen).toContain(`127.0.0.1:${web.port}`);
      const [check] = await s.check([`http://127.0.0.1:${web.port}/api-check`]);
      expect(check).toMatchObject({ ok: true, status: 200 });

      const socksPort = Number(s.socksUrl.split(':').pop());
      const httpPort = Number(s.httpProxyUrl!.split(':').pop());
      await s.close();
      expect(await probe(socksPort)).toBe('ECONNREFUSED');
      expect(await probe(httpPort)).toBe('ECONNREFUSED');
      await new Promise((r) => setTimeout(r, 300));
      expect(ended).toEqual([]); // a close() we asked for is not an 'ended' error
    } finally {
      await scope.cleanup();
    }
  });
});

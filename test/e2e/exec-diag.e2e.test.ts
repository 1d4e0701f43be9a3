/**
 * `broker-agent exec` and `broker-agent diag` as real processes against a real
 * broker and device. exec: the child's proxy environment, curl inside reaching the
 * device's network with no proxy flags, stdio and exit status passed through, and
 * nothing left behind. diag: tcp/http/https checks with exact outcomes, TLS details,
 * --insecure, --checks-file, --json and the exit status.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import {
  AGENT_BIN, Scope, cleanEnv, closedPort, deviceStreams, listen, probe, run, selfSignedCert, startBroker, startExpose,
  startHttpTarget, startHttpsTarget, tempDir, until, type BrokerInfo, type ExposeInfo, type JsonLine,
} from './tools-harness';

jest.setTimeout(60_000);

const file = new Scope();
let dir: string;
let kb: string;
let broker: BrokerInfo;
let expose: ExposeInfo;
let web: Awaited<ReturnType<typeof startHttpTarget>>;
let securePort: number;
let silentPort: number;
let refusedPort: number;
let deniedPort: number;

beforeAll(async () => {
  dir = tempDir();
  file.defer(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tlsFiles = await selfSignedCert(dir);
  web = await startHttpTarget(file, 'exec-target');
  securePort = (await startHttpsTarget(file, tlsFiles, 'diag-tls')).port;
  const silent = net.createServer((s) => { s.on('error', () => {}); }); // accepts, never answers
  const silentSockets = new Set<net.Socket>();
  silent.on('connection', (s) => { silentSockets.add(s); s.once('close', () => silentSockets.delete(s)); });
  silentPort = await listen(silent);
  file.defer(() => { for (const s of silentSockets) s.destroy(); return new Promise((r) => silent.close(r)); });
  deniedPort = (await startHttpTarget(file, 'never')).port;
  refusedPort = await closedPort();
  broker = await startBroker(file, dir);
  kb = path.join(dir, 'known_brokers');
  expose = await startExpose(file, broker, kb, [`127.0.0.1:${web.port}`, `127.0.0.1:${securePort}`, `127.0.0.1:${silentPort}`, `127.0.0.1:${refusedPort}`]);
}, 60_000);

afterAll(async () => {
  await file.cleanup();
}, 30_000);

const helperLefts = () => expose.proc.lines.filter((l) => l.event === 'helper-left').length;

function exec(script: string, opts: { env?: NodeJS.ProcessEnv; input?: string } = {}) {
  return run(AGENT_BIN, ['exec', expose.code, '--broker', broker.ssh, '--known-brokers', kb, '--', 'sh', '-c', script], { env: opts.env ?? cleanEnv(), input: opts.input, timeoutMs: 30_000 });
}

describe('broker-agent exec', () => {
  test('child gets ALL_PROXY (socks5h), HTTP(S)_PROXY and lower-case twins, NO_PROXY cleared; afterwards nothing is left', async () => {
    const leftBefore = helperLefts();
    const r = await exec([
      'for v in ALL_PROXY all_proxy HTTP_PROXY http_proxy HTTPS_PROXY https_proxy; do eval "echo $v=\\${$v-<unset>}"; done',
      'echo "NO_PROXY=${NO_PROXY-<unset>}"',
      'echo "no_proxy=${no_proxy-<unset>}"',
    ].join('; '), { env: cleanEnv({ NO_PROXY: '127.0.0.1,localhost', no_proxy: '*', HTTP_PROXY: 'http://127.0.0.1:1' }) });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const vars = Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(vars.ALL_PROXY).toMatch(/^socks5h:\/\/127\.0\.0\.1:\d+$/);
    expect(vars.all_proxy).toBe(vars.ALL_PROXY);
    expect(vars.HTTP_PROXY).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(vars.http_proxy).toBe(vars.HTTP_PROXY);
    expect(vars.HTTPS_PROXY).toBe(vars.HTTP_PROXY);
    expect(vars.https_proxy).toBe(vars.HTTP_PROXY);
    expect(vars.HTTP_PROXY).not.toBe('http://127.0.0.1:1');
    expect(vars.NO_PROXY).toBe('<unset>');
    expect(vars.no_proxy).toBe('<unset>');

    // after exec has exited: both proxy ports are closed and the device saw the helper leave
    const socksPort = Number(vars.ALL_PROXY!.split(':').pop());
    const httpPort = Number(vars.HTTP_PROXY!.split(':').pop());
    expect(await probe(socksPort)).toBe('ECONNREFUSED');
    expect(await probe(httpPort)).toBe('ECONNREFUSED');
    await until(() => helperLefts() > leftBefore, 'the device to see helper-left', 10_000);
  });

  test('curl inside (no proxy flags) reaches the device network via http_proxy, ALL_PROXY and https_proxy', async () => {
    const streamsBefore = deviceStreams(expose, `127.0.0.1:${web.port}`).length;
    const tlsBefore = deviceStreams(expose, `127.0.0.1:${securePort}`).length;
    const r = await exec([
      `curl -sS -v --fail http://127.0.0.1:${web.port}/via-http-proxy`,
      `env -u http_proxy -u HTTP_PROXY curl -sS -v --fail http://127.0.0.1:${web.port}/via-socks`,
      `curl -sS -v --fail -k https://127.0.0.1:${securePort}/via-connect`,
    ].join(' && '));
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`exec-target /via-http-proxy\nexec-target /via-socks\ndiag-tls secure /via-connect\n`);
    expect(r.stderr).toMatch(/Uses proxy env variable http_proxy == 'http:\/\/127\.0\.0\.1:\d+'/);
    expect(r.stderr).toMatch(/SOCKS5/);
    expect(r.stderr).toMatch(/Uses proxy env variable https_proxy == 'http:\/\/127\.0\.0\.1:\d+'/);
    // the device opened the streams (two for the plain target: HTTP proxy and SOCKS, one for TLS)
    await until(() => deviceStreams(expose, `127.0.0.1:${web.port}`).length - streamsBefore >= 2, 'device streams to the web target');
    await until(() => deviceStreams(expose, `127.0.0.1:${securePort}`).length - tlsBefore >= 1, 'device stream to the tls target');
  });

  test('exit status propagates: exit 7 -> 7', async () => {
    const r = await exec('exit 7');
    expect(r.code).toBe(7);
  });

  test("a failing curl's status propagates (403 from the proxy with --fail -> 22)", async () => {
    const r = await exec(`curl -sS --fail http://127.0.0.1:${deniedPort}/`);
    expect(r.code).toBe(22);
    expect(r.stderr).toMatch(/403/);
  });

  test('a refused destination through ALL_PROXY: curl reports the SOCKS failure and its status propagates', async () => {
    const r = await exec(`env -u http_proxy -u HTTP_PROXY curl -sS http://127.0.0.1:${refusedPort}/`);
    expect(r.code).not.toBe(0);
    expect([7, 97]).toContain(r.code); // curl 7.x: 7 (couldn't connect), 8.x: 97 (proxy handshake)
    expect(r.stderr).toMatch(/[Cc]onnection refused|SOCKS/);
  });

  test('stdio is forwarded (stdin in, stdout and stderr out)', async () => {
    const r = await exec('tr a-z A-Z; echo "to stderr" >&2', { input: 'hello through exec\n' });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('HELLO THROUGH EXEC\n');
    expect(r.stderr).toBe('to stderr\n');
  });

  test('SIGTERM to exec reaches the child; its status is exec\'s', async () => {
    const child = spawn(AGENT_BIN, ['exec', expose.code, '--broker', broker.ssh, '--known-brokers', kb, '--', 'sh', '-c',
      'trap "echo got-term; exit 42" TERM; echo started; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; exit 3'], { cwd: path.dirname(AGENT_BIN), env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    file.defer(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c; });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await until(() => out.includes('started'), 'the child to start');
    child.kill('SIGTERM');
    expect(await exited).toBe(42);
    expect(out).toBe('started\ngot-term\n');
  });

  test('missing command -> exit 2 with a usage hint; unknown program -> error, nothing left', async () => {
    const none = await run(AGENT_BIN, ['exec', expose.code, '--broker', broker.ssh, '--known-brokers', kb], { env: cleanEnv() });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/missing COMMAND/);
    const bad = await run(AGENT_BIN, ['exec', expose.code, '--broker', broker.ssh, '--known-brokers', kb, '--', '/nonexistent/program'], { env: cleanEnv() });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/cannot run "\/nonexistent\/program"/);
  });
});

describe('broker-agent diag', () => {
  const diag = (args: string[]) => run(AGENT_BIN, ['diag', expose.code, '--broker', broker.ssh, '--known-brokers', kb, ...args], { env: cleanEnv(), timeoutMs: 30_000 });
  const parse = (stdout: string): JsonLine[] => stdout.trim().split('\n').map((l) => JSON.parse(l) as JsonLine);
  const byCheck = (lines: JsonLine[]) => Object.fromEntries(lines.map((l) => [String(l.check), l]));

  test('a mix of checks with --json: exact outcomes, fields present, exit 1', async () => {
    const checks = {
      open: `tcp://127.0.0.1:${web.port}`,
      refused: `tcp://127.0.0.1:${refusedPort}`,
      denied: `tcp://127.0.0.1:${deniedPort}`,
      ok: `http://127.0.0.1:${web.port}/status`,
      missing: `http://127.0.0.1:${web.port}/missing`,
      tls: `https://127.0.0.1:${securePort}/`,
      silent: `http://127.0.0.1:${silentPort}/`,
    };
    const r = await diag([...Object.values(checks).flatMap((c) => ['--check', c]), '--json', '--timeout', '1500ms']);
    expect(r.code).toBe(1);
    const lines = parse(r.stdout);
    expect(lines).toHaveLength(7);
    const res = byCheck(lines);
    for (const l of lines) {
      expect(typeof l.ok).toBe('boolean');
      expect(typeof l.totalMs).toBe('number');
      expect(['tcp', 'http', 'https']).toContain(l.kind);
    }
    expect(res[checks.open]).toMatchObject({ kind: 'tcp', ok: true });
    expect(typeof res[checks.open]!.connectMs).toBe('number');
    expect(res[checks.refused]).toMatchObject({ kind: 'tcp', ok: false, error: { code: 'BRK_CONN_REFUSED' } });
    expect(res[checks.denied]).toMatchObject({ kind: 'tcp', ok: false, error: { code: 'BRK_POLICY_DENIED' } });
    expect(res[checks.ok]).toMatchObject({ kind: 'http', ok: true, status: 200, bytes: 'exec-target /status\n'.length });
    expect(typeof res[checks.ok]!.ttfbMs).toBe('number');
    expect(res[checks.missing]).toMatchObject({ kind: 'http', ok: false, status: 404, bytes: 'not here\n'.length });
    expect(res[checks.tls]).toMatchObject({ kind: 'https', ok: false, error: { code: 'BRK_BAD_REQUEST' } });
    expect((res[checks.tls]!.error as { message: string }).message).toMatch(/self[- ]signed.*--insecure/i);
    expect(res[checks.silent]).toMatchObject({ kind: 'http', ok: false, error: { code: 'BRK_TIMEOUT' } });
  });

  test('https with --insecure passes and reports subject, issuer and days left', async () => {
    const r = await diag(['--check', `https://127.0.0.1:${securePort}/`, '--insecure', '--json']);
    expect(r.code).toBe(0);
    const [l] = parse(r.stdout);
    expect(l).toMatchObject({ kind: 'https', ok: true, status: 200, tls: { subject: 'test.local', issuer: 'test.local', authorized: false } });
    const tls = l!.tls as { daysLeft: number; validTo: string };
    expect(tls.daysLeft).toBeGreaterThanOrEqual(29);
    expect(tls.daysLeft).toBeLessThanOrEqual(30);
  });

  test('all passing, table output: exit 0 and a summary line', async () => {
    const r = await diag(['--check', `tcp://127.0.0.1:${web.port}`, '--check', `http://127.0.0.1:${web.port}/`, '--check', `https://127.0.0.1:${securePort}/`, '--insecure']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CHECK\s+RESULT/);
    expect(lines).toHaveLength(5);
    expect(lines[3]).toMatch(/cert test\.local by test\.local, (29|30) days left/);
    expect(lines[4]).toBe('3/3 checks passed');
  });

  test('--checks-file (comments, blank lines) together with --check; table shows failures', async () => {
    const f = path.join(dir, 'checks.txt');
    fs.writeFileSync(f, `# branch office\ntcp://127.0.0.1:${web.port}\n\nhttp://127.0.0.1:${web.port}/from-file   # the web server\n# tcp://127.0.0.1:1\ntcp://127.0.0.1:${refusedPort}\n`);
    const r = await diag(['--checks-file', f, '--check', `tcp://127.0.0.1:${deniedPort}`, '--concurrency', '2']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`tcp://127\\.0\\.0\\.1:${refusedPort}\\s+FAIL\\s+BRK_CONN_REFUSED`));
    expect(r.stdout).toMatch(new RegExp(`tcp://127\\.0\\.0\\.1:${deniedPort}\\s+FAIL\\s+BRK_POLICY_DENIED`));
    expect(r.stdout).toMatch(/\n2\/4 checks passed\n$/);
    expect(web.requests).toContain('GET /from-file');
  });

  test('bad input: exit 2 naming the problem (bad check, missing file, no checks)', async () => {
    const bad = await diag(['--check', 'ftp://nas/']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown scheme ftp:/);
    const missing = await diag(['--checks-file', path.join(dir, 'nope.txt'), '--json']);
    expect(missing.code).toBe(2);
    expect(JSON.parse(missing.stdout.trim())).toMatchObject({ event: 'error', code: 'BRK_BAD_OPTION' });
    const none = await diag([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no checks/);
  });
});

/**
 * End-to-end harness: runs the real built programs (bin/broker, bin/broker-agent)
 * as child processes, real target servers, real curl and stock OpenSSH, and
 * cleans up everything it started even when a test fails.
 *
 * Scopes: anything started inside a test (or its beforeEach) is torn down in
 * afterEach; anything started in beforeAll is torn down in afterAll. When a test
 * or hook fails, the stderr of every process still registered is printed, so a
 * failure shows what the broker, agent and helpers said.
 *
 * NETWORK RULE: tests only send traffic to 127.0.0.0/8, ::1 and 198.18.0.0/15
 * addresses inside namespaces the harness created. Every wait is bounded.
 *
 * Set BROKER_TEST_DEBUG=1 to run clients with --log-level debug and print every
 * process's stderr at the end of each test.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import ipaddr from 'ipaddr.js';
import { Client, utils as sshUtils } from 'ssh2';

export const REPO = path.resolve(__dirname, '..', '..');
export const BROKER_BIN = path.join(REPO, 'bin', 'broker');
export const AGENT_BIN = path.join(REPO, 'bin', 'broker-agent');
export const TARGET_SCRIPT = path.join(__dirname, 'target-server.js');
const DEBUG = process.env.BROKER_TEST_DEBUG === '1';

if (!fs.existsSync(path.join(REPO, 'dist', 'cli', 'main.js'))) {
  throw new Error('dist/ is missing: run `npm run build` before the e2e tests (they run the built bin/ programs)');
}

// ---------------------------------------------------------------------------
// Cleanup scopes and failure reporting
// ---------------------------------------------------------------------------

type Cleanup = () => unknown;
const fileScope: Cleanup[] = [];
const testScope: Cleanup[] = [];
const fileProcs = new Set<JsonProc>();
const testProcs = new Set<JsonProc>();
let inTest = false;
let failedSinceReport = false;

// jest-circus keeps its event handlers in this global array; listening there is the
// only way to learn in afterEach/afterAll that a test or hook has failed.
const circusHandlers = (globalThis as Record<symbol, unknown>)[Symbol.for('EVENT_HANDLERS')];
if (Array.isArray(circusHandlers)) {
  circusHandlers.push((ev: { name: string }) => {
    if (ev.name === 'test_fn_failure' || ev.name === 'hook_failure') failedSinceReport = true;
  });
}

beforeEach(() => {
  inTest = true;
});

afterEach(async () => {
  inTest = false;
  if (failedSinceReport || DEBUG) reportProcs([...testProcs, ...fileProcs], failedSinceReport ? 'test failed' : 'debug');
  failedSinceReport = false;
  await runCleanups(testScope);
  testProcs.clear();
}, 30_000);

afterAll(async () => {
  if (failedSinceReport) reportProcs([...fileProcs], 'hook failed');
  failedSinceReport = false;
  await runCleanups(fileScope);
  fileProcs.clear();
}, 30_000);

async function runCleanups(list: Cleanup[]): Promise<void> {
  while (list.length > 0) {
    const fn = list.pop()!;
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`e2e cleanup error: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
}

/** Register a cleanup in the current scope (test or file); run in reverse order. */
export function onCleanup(fn: Cleanup): void {
  (inTest ? testScope : fileScope).push(fn);
}

function reportProcs(procs: JsonProc[], why: string): void {
  if (procs.length === 0) return;
  const parts = procs.map((p) => {
    const status = p.exitCode !== undefined ? `exited ${p.exitCode}` : 'running';
    return [
      `──── ${p.name} (pid ${p.pid}, ${status}) ────`,
      `$ ${p.commandLine}`,
      `stdout (last lines):\n${tail(p.stdout, 3000) || '(empty)'}`,
      `stderr:\n${tail(p.stderr, 6000) || '(empty)'}`,
    ].join('\n');
  });
  console.error(`[e2e] ${why}; output of the processes involved:\n${parts.join('\n')}`);
}

function tail(text: string, max: number): string {
  return text.length > max ? `…${text.slice(-max)}` : text.trimEnd();
}

// ---------------------------------------------------------------------------
// Temporary files
// ---------------------------------------------------------------------------

/** A fresh temp directory, removed at the end of the current scope. */
export function tempDir(prefix = 'rab-e2e-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Environment for every spawned program: no inherited BROKER_* or proxy settings, private XDG dirs. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('BROKER_') || /^(all|http|https|ftp|no)_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  const xdg = tempDir('rab-xdg-');
  env.XDG_CONFIG_HOME = path.join(xdg, 'config');
  env.XDG_DATA_HOME = path.join(xdg, 'data');
  return { ...env, ...extra };
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/** A JSON line from a process's stdout (non-JSON lines are kept as `{ _raw }`). */
export type JsonLine = Record<string, unknown> & { event?: string };

interface Waiter {
  pred: (line: JsonLine) => boolean;
  resolve: (line: JsonLine) => void;
}

/**
 * A spawned program: stdout split into lines and parsed as JSON, stderr captured,
 * `waitFor(pred, ms)`, `waitExit(ms)`, `kill(signal)`. Registered for cleanup.
 */
export class JsonProc {
  readonly lines: JsonLine[] = [];
  stdout = '';
  stderr = '';
  /** Exit code once exited (128+signal number when killed by a signal). */
  exitCode: number | undefined;
  readonly exited: Promise<number>;
  readonly commandLine: string;
  private partial = '';
  private readonly waiters = new Set<Waiter>();

  constructor(readonly name: string, readonly child: ChildProcess, argv: string[]) {
    this.commandLine = argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' ');
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => this.onStdout(chunk));
    child.stderr?.on('data', (chunk: string) => { this.stderr += chunk; });
    this.exited = new Promise((resolve) => {
      child.once('error', (err) => {
        this.stderr += `\n[harness] spawn failed: ${err.message}\n`;
        if (this.exitCode === undefined) this.exitCode = 127;
        resolve(this.exitCode);
      });
      // 'close' (not 'exit') so that all stdout/stderr has been read.
      child.once('close', (code, signal) => {
        this.exitCode = code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0);
        resolve(this.exitCode);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  private onStdout(chunk: string): void {
    this.stdout += chunk;
    this.partial += chunk;
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const text = this.partial.slice(0, nl).replace(/\r$/, '');
      this.partial = this.partial.slice(nl + 1);
      if (text.trim() === '') continue;
      let line: JsonLine;
      try {
        const v: unknown = JSON.parse(text);
        line = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as JsonLine) : { _raw: text };
      } catch {
        line = { _raw: text };
      }
      this.lines.push(line);
      for (const w of this.waiters) {
        if (w.pred(line)) {
          this.waiters.delete(w);
          w.resolve(line);
        }
      }
    }
  }

  /**
   * The first stdout line (already seen or future) matching `pred`. Rejects after
   * `ms`, or when the process exits without printing one; the error carries the
   * process's output.
   */
  waitFor(pred: (line: JsonLine) => boolean, ms: number, what = 'a matching line'): Promise<JsonLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        pred,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.waiters.add(waiter);
      const fail = (why: string) => {
        if (!this.waiters.delete(waiter)) return;
        clearTimeout(timer);
        reject(new Error(`${this.name}: ${why} while waiting for ${what}\n${this.describe()}`));
      };
      timer = setTimeout(() => fail(`no line after ${ms} ms`), ms);
      void this.exited.then((code) => fail(`exited with code ${code}`));
    });
  }

  /** Wait for stdout or stderr text matching `re` (for programs without JSON output). */
  async waitForText(re: RegExp, ms: number, stream: 'stdout' | 'stderr' | 'both' = 'both'): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms;
    for (let i = 0; i < 10_000; i++) {
      const text = stream === 'stdout' ? this.stdout : stream === 'stderr' ? this.stderr : `${this.stdout}\n${this.stderr}`;
      const m = re.exec(text);
      if (m) return m;
      if (!this.running) throw new Error(`${this.name}: exited with code ${this.exitCode} before printing ${re}\n${this.describe()}`);
      if (Date.now() >= deadline) throw new Error(`${this.name}: no ${re} after ${ms} ms\n${this.describe()}`);
      await sleep(25);
    }
    throw new Error(`${this.name}: gave up waiting for ${re}`);
  }

  /** Exit code (128+N for signal N). Rejects if still running after `ms`. */
  waitExit(ms: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: still running after ${ms} ms\n${this.describe()}`)), ms);
      void this.exited.then((code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, signal);
      } catch {
        /* already gone */
      }
    }
  }

  /** Kill (SIGTERM, then SIGKILL after `graceMs`) and wait for the exit. */
  async stop(graceMs = 1500): Promise<void> {
    if (!this.running) return;
    this.kill('SIGTERM');
    try {
      await this.waitExit(graceMs);
    } catch {
      this.kill('SIGKILL');
      await this.waitExit(5000).catch(() => undefined);
    }
  }

  /** Non-JSON stderr lines, trimmed. */
  stderrLines(): string[] {
    return this.stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  }

  describe(): string {
    return [`$ ${this.commandLine}`, `stdout: ${tail(this.stdout, 2000) || '(empty)'}`, `stderr: ${tail(this.stderr, 3000) || '(empty)'}`].join('\n');
  }
}

export interface SpawnOptions {
  /** Run inside this network namespace (`ip netns exec NS ...`). */
  netns?: string;
  env?: Record<string, string>;
  /** Keep stdin as a pipe (default: ignored). */
  stdin?: boolean;
  cwd?: string;
}

/** Spawn a program as a registered JsonProc. `cmd` may be a script run with this node. */
export function spawnProc(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): JsonProc {
  const isScript = cmd === BROKER_BIN || cmd === AGENT_BIN || cmd === TARGET_SCRIPT;
  let argv = isScript ? [process.execPath, cmd, ...args] : [cmd, ...args];
  if (opts.netns) argv = ['ip', 'netns', 'exec', opts.netns, ...argv];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: opts.cwd ?? REPO,
    env: cleanEnv(opts.env),
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  // `ip netns exec` execs the program, so the pid is the program's own.
  const proc = new JsonProc(name, child, argv);
  (inTest ? testProcs : fileProcs).add(proc);
  onCleanup(() => proc.stop(500));
  return proc;
}

/** Split `HOST:PORT` / `[v6]:PORT`. */
export function splitHostPort(hp: string): { host: string; port: number } {
  const m = /^\[(.+)\]:(\d+)$/.exec(hp) ?? /^(.+):(\d+)$/.exec(hp);
  if (!m) throw new Error(`not HOST:PORT: ${hp}`);
  return { host: m[1]!, port: Number(m[2]) };
}

// ---------------------------------------------------------------------------
// The programs
// ---------------------------------------------------------------------------

export interface BrokerProc {
  proc: JsonProc;
  /** `HOST:PORT` as printed by the broker. */
  ssh: string;
  host: string;
  port: number;
  fingerprint: string;
  dataDir: string;
}

export interface BrokerOptions {
  /** Listen host (default 127.0.0.1). */
  host?: string;
  checkInterval?: string;
  dataDir?: string;
  args?: string[];
  /** Extra environment (e.g. BROKER_* tunables). */
  env?: Record<string, string>;
}

/** `broker serve --listen HOST:0 --log-format json --check-interval 1s`; resolves once listening. */
export async function startBroker(opts: BrokerOptions = {}): Promise<BrokerProc> {
  const host = opts.host ?? '127.0.0.1';
  const dataDir = opts.dataDir ?? tempDir('rab-broker-');
  const proc = spawnProc('broker', BROKER_BIN, [
    'serve', '--listen', `${host}:0`, '--data-dir', dataDir, '--log-format', 'json',
    '--check-interval', opts.checkInterval ?? '1s', '--log-level', DEBUG ? 'debug' : 'info', ...(opts.args ?? []),
  ], { env: opts.env });
  const ev = await proc.waitFor((l) => l.event === 'listening', 15_000, 'the listening line');
  const ssh = String(ev.ssh);
  const { port } = splitHostPort(ssh);
  return { proc, ssh, host, port, fingerprint: String(ev.fingerprint), dataDir };
}

export interface ClientOptions extends SpawnOptions {
  /** known-brokers file (default: a fresh file in a temp dir, i.e. trust on first use). */
  knownBrokers?: string;
  /** Pin the broker key (`--fingerprint`). `true` = the broker's real fingerprint. */
  fingerprint?: string | true;
  /** Address to give as --broker (default: what the broker printed). */
  brokerAddress?: string;
}

function clientArgs(broker: BrokerProc, opts: ClientOptions): string[] {
  const args = ['--broker', opts.brokerAddress ?? broker.ssh, '--json', '--known-brokers', opts.knownBrokers ?? path.join(tempDir('rab-kb-'), 'known_brokers')];
  if (opts.fingerprint) args.push('--fingerprint', opts.fingerprint === true ? broker.fingerprint : opts.fingerprint);
  if (DEBUG) args.push('--log-level', 'debug');
  return args;
}

/** Spawn `broker-agent expose` without waiting (for failure cases). */
export function spawnExpose(broker: BrokerProc, args: string[], opts: ClientOptions = {}): JsonProc {
  return spawnProc('expose', AGENT_BIN, ['expose', ...clientArgs(broker, opts), ...args], opts);
}

export interface ExposeProc {
  proc: JsonProc;
  code: string;
  session: JsonLine;
}

/** `broker-agent expose ... ARGS`; resolves with the session code. */
export async function startExpose(broker: BrokerProc, args: string[], opts: ClientOptions = {}): Promise<ExposeProc> {
  const proc = spawnExpose(broker, args, opts);
  const session = await proc.waitFor((l) => l.event === 'session', 20_000, 'the session event');
  return { proc, code: String(session.code), session };
}

let joinFlags: Promise<string> | undefined;

/**
 * Extra listen flags for join: `--http 127.0.0.1:0` when this build has an HTTP
 * proxy front-end (its fixed default port would collide between helpers).
 */
async function joinListenFlags(): Promise<string[]> {
  joinFlags ??= run(process.execPath, [AGENT_BIN, 'join', '--help']).then((r) => r.stdout, () => '');
  return (await joinFlags).includes('--http') ? ['--http', '127.0.0.1:0'] : [];
}

/** Spawn `broker-agent join CODE --socks 127.0.0.1:0` without waiting (for failure cases). */
export async function spawnJoin(broker: BrokerProc, code: string, args: string[] = [], opts: ClientOptions = {}): Promise<JsonProc> {
  const listen = ['--socks', '127.0.0.1:0', ...(await joinListenFlags())];
  return spawnProc('join', AGENT_BIN, ['join', code, ...clientArgs(broker, opts), ...listen, ...args], opts);
}

export interface JoinProc {
  proc: JsonProc;
  /** `127.0.0.1:PORT` of the local SOCKS5 proxy. */
  socks: string;
  socksPort: number;
  ready: JsonLine;
}

/** `broker-agent join CODE --socks 127.0.0.1:0`; resolves once the local SOCKS port is ready. */
export async function startJoin(broker: BrokerProc, code: string, args: string[] = [], opts: ClientOptions = {}): Promise<JoinProc> {
  const proc = await spawnJoin(broker, code, args, opts);
  const ready = await proc.waitFor((l) => l.event === 'ready', 20_000, 'the ready event');
  const socks = String(ready.socks);
  return { proc, socks, socksPort: splitHostPort(socks).port, ready };
}

// ---------------------------------------------------------------------------
// Clients: curl, raw SOCKS5, raw TCP
// ---------------------------------------------------------------------------

export interface CurlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run curl (async; never blocks the event loop). Always bounded by --max-time. */
export function curl(args: string[], opts: { timeoutMs?: number; maxTimeSec?: number } = {}): Promise<CurlResult> {
  const maxTime = opts.maxTimeSec ?? 30;
  const full = ['-sS', '--max-time', String(maxTime), ...args];
  return new Promise((resolve) => {
    execFile('curl', full, { env: cleanCurlEnv(), timeout: opts.timeoutMs ?? (maxTime + 10) * 1000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      if (e && typeof e.code === 'string') {
        // spawn failure (ENOENT: curl not installed) is a test failure, loudly
        resolve({ code: -1, stdout, stderr: `${stderr}\n[harness] could not run curl: ${e.code} ${e.message}` });
        return;
      }
      resolve({ code: e ? Number(e.code ?? 1) : 0, stdout, stderr });
    });
  });
}

function cleanCurlEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(all|http|https|ftp|no)_proxy$/i.test(k) && !k.startsWith('CURL_')) env[k] = v;
  env.CURL_HOME = os.tmpdir(); // no ~/.curlrc
  return env;
}

/** `curl --socks5-hostname SOCKS URL` */
export function curlSocks(socks: string, url: string, extra: string[] = [], opts?: { maxTimeSec?: number }): Promise<CurlResult> {
  return curl(['--socks5-hostname', socks, ...extra, url], opts);
}

/** The REP code curl reports for a failed SOCKS5 connect (`... (N)` in its error text), if any. */
export function curlSocksRep(r: CurlResult): number | undefined {
  const m = /(?:can't|cannot) complete SOCKS5 connection to .*\((\d+)\)/i.exec(r.stderr);
  return m ? Number(m[1]) : undefined;
}

/** Buffered reader over a socket: `read(n)` resolves with exactly n bytes. */
class SocketReader {
  private buf = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.once('end', this.onEnd);
    socket.once('close', this.onEnd);
    socket.on('error', this.onEnd);
  }

  private readonly onData = (c: Buffer) => {
    this.buf = Buffer.concat([this.buf, c]);
    this.wake?.();
  };

  private readonly onEnd = () => {
    this.ended = true;
    this.wake?.();
  };

  async read(n: number, deadline: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`connection closed after ${this.buf.length} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Stop reading; hand back anything buffered (it belongs to the relayed stream). */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onEnd);
    return this.buf;
  }
}

export function connectTcp(host: string, port: number, timeoutMs = 5000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect ${host}:${port} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

export interface SocksResult {
  /** REP byte of the server's reply. */
  rep: number;
  socket: net.Socket;
  bound: { host: string; port: number };
  /** Bytes received after the reply (start of the relayed stream). */
  rest: Buffer;
}

/**
 * A minimal, independent SOCKS5 client (RFC 1928): no-auth greeting, CONNECT,
 * and the server's reply parsed exactly. `atyp` defaults to IPv4/IPv6 for IP
 * literals and domain otherwise; pass 'domain' to send any string as a name.
 */
export async function socksConnect(proxy: string, host: string, port: number, opts: { timeoutMs?: number; atyp?: 'ipv4' | 'ipv6' | 'domain' } = {}): Promise<SocksResult> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  const p = splitHostPort(proxy);
  const socket = await connectTcp(p.host, p.port);
  onCleanup(() => socket.destroy());
  const reader = new SocketReader(socket);
  try {
    socket.write(Buffer.from([5, 1, 0]));
    const sel = await reader.read(2, deadline);
    if (sel[0] !== 5 || sel[1] !== 0) throw new Error(`unexpected method selection ${sel.toString('hex')}`);
    const atyp = opts.atyp ?? (net.isIPv4(host) ? 'ipv4' : net.isIPv6(host) ? 'ipv6' : 'domain');
    let addr: Buffer;
    if (atyp === 'ipv4') addr = Buffer.concat([Buffer.from([1]), Buffer.from(host.split('.').map(Number))]);
    else if (atyp === 'ipv6') addr = Buffer.concat([Buffer.from([4]), ipv6Bytes(host)]);
    else addr = Buffer.concat([Buffer.from([3, Buffer.byteLength(host)]), Buffer.from(host)]);
    const portBuf = Buffer.alloc(2);
    portBuf.writeUInt16BE(port);
    socket.write(Buffer.concat([Buffer.from([5, 1, 0]), addr, portBuf]));
    const head = await reader.read(4, deadline);
    if (head[0] !== 5) throw new Error(`bad reply version ${head[0]}`);
    const rep = head[1]!;
    let bound = { host: '', port: 0 };
    try {
      const type = head[3];
      const alen = type === 1 ? 4 : type === 4 ? 16 : type === 3 ? (await reader.read(1, deadline))[0]! : -1;
      if (alen < 0) throw new Error(`bad reply ATYP ${type}`);
      const a = await reader.read(alen, deadline);
      const pb = await reader.read(2, deadline);
      bound = { host: type === 1 ? [...a].join('.') : type === 3 ? a.toString() : a.toString('hex'), port: pb.readUInt16BE(0) };
    } catch (err) {
      if (rep === 0) throw err; // a success reply must be complete
    }
    return { rep, socket, bound, rest: reader.detach() };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** Just the REP byte for a CONNECT (the socket is closed). */
export async function socksRep(proxy: string, host: string, port: number, opts?: { timeoutMs?: number; atyp?: 'ipv4' | 'ipv6' | 'domain' }): Promise<number> {
  const r = await socksConnect(proxy, host, port, opts);
  r.socket.destroy();
  return r.rep;
}

function ipv6Bytes(text: string): Buffer {
  return Buffer.from(ipaddr.IPv6.parse(text.replace(/^\[|\]$/g, '')).toByteArray());
}

/** Read everything until the peer closes (or `ms` passes). */
export function readAll(socket: net.Socket, ms: number, initial: Buffer = Buffer.alloc(0)): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [initial];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      socket.off('data', onData);
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const onData = (c: Buffer) => chunks.push(c);
    const t = setTimeout(() => finish(false), ms);
    socket.on('data', onData);
    socket.once('end', () => finish(true));
    socket.once('close', () => finish(true));
    socket.on('error', () => finish(true));
    if (socket.destroyed) finish(true);
  });
}

/** Send raw bytes to HOST:PORT and collect the answer until the peer closes or `ms` passes. */
export async function rawExchange(host: string, port: number, bytes: Buffer, ms: number): Promise<{ data: Buffer; closed: boolean }> {
  const s = await connectTcp(host, port);
  onCleanup(() => s.destroy());
  const done = readAll(s, ms);
  s.write(bytes);
  const r = await done;
  s.destroy();
  return r;
}

// ---------------------------------------------------------------------------
// Target servers
// ---------------------------------------------------------------------------

interface TargetModule {
  blob(bytes: number, seed: string): Buffer;
  sha256(buf: Buffer): string;
  createHttpTarget(marker: string): import('node:http').Server;
  createHalfCloseServer(): net.Server;
  listen(server: net.Server, host: string, port: number): Promise<number>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const targetLib: TargetModule = require('./target-server.js') as TargetModule;

export interface Targets {
  marker: string;
  host: string;
  /** HTTP target (GET / → marker, /blob, POST /sha256). */
  httpPort: number;
  /** Raw half-close target. */
  halfClosePort: number;
  /** A port on `host` where nothing listens (bound, then closed). */
  closedPort: number;
}

/** In-process targets on 127.0.0.1:0 (closed at the end of the scope). */
export async function startTargets(marker = `target-${randomBytes(6).toString('hex')}`, host = '127.0.0.1'): Promise<Targets> {
  const httpServer = targetLib.createHttpTarget(marker);
  const half = targetLib.createHalfCloseServer();
  const httpPort = await targetLib.listen(httpServer, host, 0);
  const halfClosePort = await targetLib.listen(half, host, 0);
  onCleanup(() => closeServer(half));
  onCleanup(() => closeServer(httpServer));
  return { marker, host, httpPort, halfClosePort, closedPort: await closedPort(host) };
}

function closeServer(s: net.Server): Promise<void> {
  (s as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
  return new Promise((resolve) => s.close(() => resolve()));
}

/** A port with nothing listening: bind :0, read the port, close. (The kernel won't hand it out again soon.) */
export async function closedPort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  const port = await targetLib.listen(s, host, 0);
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** The target server as its own process (e.g. inside a namespace). */
export async function spawnTargets(opts: { host: string; port?: number; marker: string; netns?: string }): Promise<{ proc: JsonProc; httpPort: number; halfClosePort: number }> {
  const proc = spawnProc('target', TARGET_SCRIPT, ['--host', opts.host, '--port', String(opts.port ?? 0), '--marker', opts.marker], { netns: opts.netns, stdin: true });
  const ev = await proc.waitFor((l) => l.event === 'listening', 10_000, 'the target listening line');
  return { proc, httpPort: Number(ev.http), halfClosePort: Number(ev.halfclose) };
}

export function sha256(buf: Buffer | string): string {
  return createHash('sha256').update(buf).digest('hex');
}

export function sha256File(file: string): string {
  return sha256(fs.readFileSync(file));
}

// ---------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------

/** Run a command (async), bounded; rejects with its stderr on failure. */
export function run(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve({ stdout, stderr });
    });
  });
}

/**
 * Fail (not skip) with a clear message when network namespaces cannot be used.
 * CI runs as root with iproute2 installed.
 */
export async function requireNetns(): Promise<void> {
  const why = 'the network-namespace e2e tests need root and iproute2 (`ip netns`); CI runs them as root';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new Error(`${why}; this process runs as uid ${process.getuid()}`);
  try {
    await run('ip', ['netns', 'list']);
  } catch (err) {
    throw new Error(`${why}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export interface Topology {
  /** Namespace of the assisted device (runs the agent). */
  dev: string;
  /** Namespace of the device's LAN (runs the target). */
  lan: string;
  /** Root-namespace address of the root⇄dev link (the broker listens here). */
  rootAddr: string;
  /** The dev namespace's address on that link. */
  devAddr: string;
  /** The dev namespace's address on its LAN (198.18.0.1). */
  devLanAddr: string;
  /** The LAN host (198.18.0.2, `printer.lan` in the dev namespace's /etc/hosts). */
  lanAddr: string;
  lanPrefix: string;
}

/**
 * root ns ⇄ veth ⇄ `dev` ns ⇄ veth ⇄ `lan` ns, only 198.18.0.0/15 addresses:
 * root 198.18.1.1/30 ⇄ dev 198.18.1.2/30 (the next free /30 if a concurrent run holds it);
 * dev 198.18.0.1/24 ⇄ lan 198.18.0.2/24. The root namespace gets an `unreachable`
 * route for 198.18.0.0/24 so it can never reach the LAN directly, nor send packets for
 * it out of its default route. /etc/netns/<dev>/hosts maps printer.lan (plus `hosts`)
 * and /etc/netns/<dev>/resolv.conf points at 127.0.0.1 where nothing listens, so
 * unknown names fail fast and no DNS query leaves the namespace. Everything is removed
 * at the end of the scope.
 */
export async function createTopology(opts: { hosts?: string[] } = {}): Promise<Topology> {
  await requireNetns();
  await sweepStaleNamespaces();
  // Unique names: the pid (so stale ones can be swept) plus a random tag (the module,
  // and with it any counter, is loaded afresh for every test file in the same process).
  const tag = randomBytes(4).readUInt32BE(0).toString(36).slice(0, 3).padStart(3, '0');
  const dev = `rab${process.pid}x${tag}d`;
  const lan = `rab${process.pid}x${tag}l`;
  const vRoot = `rv${process.pid}${tag}a`; // interface names: at most 15 characters
  const vDevUp = `rv${process.pid}${tag}b`;
  const vDevLan = `rv${process.pid}${tag}c`;
  const vLan = `rv${process.pid}${tag}e`;
  if (vRoot.length > 15) throw new Error(`interface name too long: ${vRoot}`);
  const metric = (process.pid % 4_000_000) * 1000 + (randomBytes(2).readUInt16BE(0) % 1000);
  const lanPrefix = '198.18.0.0/24';
  const etcDir = path.join('/etc/netns', dev);

  // Cleanup is registered first so that a half-built topology is removed too.
  onCleanup(async () => {
    await run('ip', ['netns', 'del', dev]).catch(() => undefined);
    await run('ip', ['netns', 'del', lan]).catch(() => undefined);
    await run('ip', ['link', 'del', vRoot]).catch(() => undefined);
    await run('ip', ['route', 'del', 'unreachable', lanPrefix, 'metric', String(metric)]).catch(() => undefined);
    fs.rmSync(etcDir, { recursive: true, force: true });
  });

  const { rootAddr, devAddr } = await pickLinkSubnet();
  fs.mkdirSync(etcDir, { recursive: true });
  fs.writeFileSync(path.join(etcDir, 'hosts'), ['127.0.0.1 localhost', '198.18.0.2 printer.lan', ...(opts.hosts ?? [])].join('\n') + '\n');
  fs.writeFileSync(path.join(etcDir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');

  await run('ip', ['netns', 'add', dev]);
  await run('ip', ['netns', 'add', lan]);
  await run('ip', ['link', 'add', vRoot, 'type', 'veth', 'peer', 'name', vDevUp, 'netns', dev]);
  await run('ip', ['addr', 'add', `${rootAddr}/30`, 'dev', vRoot]);
  await run('ip', ['link', 'set', vRoot, 'up']);
  await run('ip', ['route', 'add', 'unreachable', lanPrefix, 'metric', String(metric)]);
  await run('ip', ['-n', dev, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', dev, 'addr', 'add', `${devAddr}/30`, 'dev', vDevUp]);
  await run('ip', ['-n', dev, 'link', 'set', vDevUp, 'up']);
  await run('ip', ['-n', dev, 'link', 'add', vDevLan, 'type', 'veth', 'peer', 'name', vLan, 'netns', lan]);
  await run('ip', ['-n', dev, 'addr', 'add', '198.18.0.1/24', 'dev', vDevLan]);
  await run('ip', ['-n', dev, 'link', 'set', vDevLan, 'up']);
  await run('ip', ['-n', lan, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', lan, 'addr', 'add', '198.18.0.2/24', 'dev', vLan]);
  await run('ip', ['-n', lan, 'link', 'set', vLan, 'up']);
  // New namespaces may inherit IPv4 forwarding from the root one; neither may route anything
  // (the tests rely on the LAN host silently dropping packets that are not for it).
  for (const ns of [dev, lan]) await run('ip', ['netns', 'exec', ns, 'sh', '-c', 'echo 0 > /proc/sys/net/ipv4/ip_forward']);

  // The veth ends need a moment to come up; wait (bounded) until dev can reach the broker side.
  const deadline = Date.now() + 10_000;
  for (let i = 0; i < 100; i++) {
    const r = await run('ip', ['-n', dev, '-o', 'link', 'show', vDevUp]).catch(() => ({ stdout: '' }));
    const l = await run('ip', ['-n', lan, '-o', 'link', 'show', vLan]).catch(() => ({ stdout: '' }));
    if (/LOWER_UP/.test(r.stdout) && /LOWER_UP/.test(l.stdout)) break;
    if (Date.now() > deadline) throw new Error(`veth links of ${dev} did not come up`);
    await sleep(50);
  }
  return { dev, lan, rootAddr, devAddr, devLanAddr: '198.18.0.1', lanAddr: '198.18.0.2', lanPrefix };
}

/** The first /30 in 198.18.1.0/24..198.18.9.0/24 that no interface in the root namespace uses. */
async function pickLinkSubnet(): Promise<{ rootAddr: string; devAddr: string }> {
  const used = (await run('ip', ['-4', '-o', 'addr', 'show'])).stdout;
  for (let third = 1; third <= 9; third++) {
    for (let base = 0; base < 256; base += 4) {
      const rootAddr = `198.18.${third}.${base + 1}`;
      if (!used.includes(` ${rootAddr}/`)) return { rootAddr, devAddr: `198.18.${third}.${base + 2}` };
    }
  }
  throw new Error('no free /30 in 198.18.1.0-198.18.9.255 for the test link');
}

/** Remove namespaces (and their /etc/netns dirs) left by earlier runs whose process is gone. */
async function sweepStaleNamespaces(): Promise<void> {
  const list = (await run('ip', ['netns', 'list'])).stdout;
  for (const m of list.matchAll(/^(rab(\d+)x[0-9a-z]{3}[dl])\b/gm)) {
    const pid = Number(m[2]);
    if (pid === process.pid || pidAlive(pid)) continue;
    await run('ip', ['netns', 'del', m[1]!]).catch(() => undefined);
    fs.rmSync(path.join('/etc/netns', m[1]!), { recursive: true, force: true });
  }
  const routes = (await run('ip', ['route', 'show', 'type', 'unreachable'])).stdout;
  for (const m of routes.matchAll(/^unreachable 198\.18\.0\.0\/24 .*metric (\d+)/gm)) {
    const pid = Math.floor(Number(m[1]) / 1000);
    if (pid === process.pid % 4_000_000 || pidAlive(pid)) continue;
    await run('ip', ['route', 'del', 'unreachable', '198.18.0.0/24', 'metric', m[1]!]).catch(() => undefined);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---------------------------------------------------------------------------
// Stock OpenSSH
// ---------------------------------------------------------------------------

/** Fail loudly when the OpenSSH client is missing (CI installs openssh-client). */
export async function requireOpenSsh(): Promise<void> {
  for (const tool of ['ssh', 'ssh-keygen']) {
    try {
      await run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      throw new Error(`${tool} not found: the stock-OpenSSH e2e tests need openssh-client installed (apt-get install openssh-client)`);
    }
  }
}

/** A fresh ed25519 key (`ssh-keygen -t ed25519 -N '' -f`); returns the private key path. */
export async function sshKeygen(): Promise<string> {
  const key = path.join(tempDir('rab-sshkey-'), 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'e2e', '-f', key]);
  return key;
}

/** Options every stock ssh invocation needs: no user config, no agent, no known_hosts, no prompts. */
export function sshBaseArgs(key: string, port: number): string[] {
  return [
    '-F', '/dev/null', '-i', key, '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none',
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
    '-o', 'ConnectTimeout=10', '-o', 'LogLevel=INFO', '-p', String(port),
  ];
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `fn` until it returns truthy (bounded by `ms`). */
export async function until<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, ms: number, what: string, stepMs = 50): Promise<T> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < Math.ceil(ms / stepMs) + 1; i++) {
    const v = await fn();
    if (v) return v;
    if (Date.now() >= deadline) break;
    await sleep(stepMs);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** A valid-looking session code that differs from `code` in its last character. */
export function wrongCode(code: string): string {
  const alphabet = '0123456789abcdefghjkmnpqrstvwxyz';
  const last = code[code.length - 1]!;
  const next = alphabet[(alphabet.indexOf(last) + 1) % alphabet.length]!;
  return code.slice(0, -1) + next;
}

// ---------------------------------------------------------------------------
// raw ssh2 peers (hostile helpers, fake agents)
// ---------------------------------------------------------------------------

/** A fresh ed25519 key that ssh2 can parse (its generator rarely emits one it cannot). */
export function freshKey(): string {
  for (let i = 0; i < 8; i++) {
    const k = sshUtils.generateKeyPairSync('ed25519');
    if (!(sshUtils.parseKey(k.private) instanceof Error)) return k.private;
  }
  throw new Error('ssh2 could not generate a usable ed25519 key');
}

function fingerprintOf(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** Connect a raw ssh2 client to `broker` with a fresh key, checking its host key; `ident` replaces ssh2's. */
export function rawSshClient(broker: BrokerProc, username: string, opts: { ident?: string } = {}): Promise<Client> {
  const privateKey = freshKey();
  return new Promise((resolve, reject) => {
    const c = new Client();
    onCleanup(() => c.end());
    const t = setTimeout(() => reject(new Error('raw ssh2 client: no ready within 15 s')), 15_000);
    c.once('ready', () => {
      clearTimeout(t);
      resolve(c);
    });
    c.once('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
    c.connect({
      host: broker.host, port: broker.port, username, privateKey, readyTimeout: 15_000, ident: opts.ident,
      hostVerifier: (k: Buffer) => fingerprintOf(k) === broker.fingerprint,
      strictVendor: false, // the broker is not OpenSSH but speaks direct-streamlocal
    });
  });
}

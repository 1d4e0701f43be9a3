/**
 * Small e2e helpers for the helper-tools tests (HTTP proxy, exec, diag, examples,
 * browser): spawn the built programs (bin/broker, bin/broker-agent), read their
 * JSON lines, run client tools asynchronously (never *Sync: in-process servers must
 * keep answering), and kill everything a test started, even when it fails.
 *
 * NETWORK RULE: everything here talks to 127.0.0.1 only. Every wait is bounded.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { AGENT_BIN, BROKER_BIN, REPO } from './harness';

export { AGENT_BIN, BROKER_BIN, REPO, closedPort } from './harness';

if (!fs.existsSync(path.join(REPO, 'dist', 'cli', 'main.js'))) {
  throw new Error('dist/ is missing: run `npm run build` before the e2e tests (they run the built bin/ programs)');
}

export type JsonLine = Record<string, unknown> & { event?: string };

/** A spawned program whose stdout is JSON lines (non-JSON lines are kept as text). */
export class Proc {
  readonly lines: JsonLine[] = [];
  readonly text: string[] = [];
  stderr = '';
  exitCode: number | null = null;
  signal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;
  private waiters: Array<() => void> = [];

  constructor(readonly name: string, readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (c: string) => {
      buf += c;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.text.push(line);
        try { this.lines.push(JSON.parse(line) as JsonLine); } catch { /* plain text */ }
      }
      this.notify();
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => { if (this.stderr.length < 200_000) this.stderr += c; });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.signal = signal;
        this.notify();
        resolve();
      });
    });
    child.once('error', (err) => { this.stderr += `spawn error: ${err.message}\n`; });
  }

  get running(): boolean {
    return this.exitCode === null && this.signal === null;
  }

  private notify(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** Wait for a JSON line matching `pred` (bounded); fails early if the process exits. */
  async waitLine(pred: (l: JsonLine) => boolean, what: string, timeoutMs = 15_000): Promise<JsonLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (!this.running) throw new Error(`${this.name} exited (${this.exitCode ?? this.signal}) before ${what}; stderr:\n${this.stderr}\nstdout:\n${this.text.join('\n')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: no ${what} within ${timeoutMs} ms; stderr:\n${this.stderr}\nstdout:\n${this.text.join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => { if (this.running) this.child.kill('SIGKILL'); }, graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

/** Everything a test (or a file) started; `cleanup()` stops it all, in reverse order. */
export class Scope {
  private procs: Proc[] = [];
  private closers: Array<() => unknown> = [];

  spawn(name: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Proc {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const p = new Proc(name, child);
    this.procs.push(p);
    return p;
  }

  defer(fn: () => unknown): void {
    this.closers.push(fn);
  }

  /** Print the stderr of every process (for a failing test). */
  dump(): string {
    return this.procs.map((p) => `--- ${p.name} (${p.running ? 'running' : `exit ${p.exitCode ?? p.signal}`}) stderr:\n${p.stderr.slice(-4000)}`).join('\n');
  }

  async cleanup(): Promise<void> {
    const procs = this.procs.reverse();
    this.procs = [];
    await Promise.all(procs.map((p) => p.stop()));
    const closers = this.closers.reverse();
    this.closers = [];
    for (const c of closers) {
      try { await c(); } catch { /* best effort */ }
    }
  }
}

export function tempDir(prefix = 'rab-tools-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface BrokerInfo { proc: Proc; ssh: string; host: string; port: number; fingerprint: string }

/** `broker serve` on a free loopback port with a fast liveness check. */
export async function startBroker(scope: Scope, dir: string): Promise<BrokerInfo> {
  const proc = scope.spawn('broker', BROKER_BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'broker-data'), '--log-format', 'json', '--check-interval', '1s']);
  const l = await proc.waitLine((x) => x.event === 'listening', 'listening line');
  const ssh = String(l.ssh);
  const i = ssh.lastIndexOf(':');
  return { proc, ssh, host: ssh.slice(0, i), port: Number(ssh.slice(i + 1)), fingerprint: String(l.fingerprint) };
}

export interface ExposeInfo { proc: Proc; code: string }

/** `broker-agent expose --allow ...` (one --allow per rule); resolves with the session code. */
export async function startExpose(scope: Scope, broker: BrokerInfo, kb: string, allow: string[], extra: string[] = []): Promise<ExposeInfo> {
  const proc = scope.spawn('expose', AGENT_BIN, ['expose', '--broker', broker.ssh, '--json', '--known-brokers', kb, ...allow.flatMap((a) => ['--allow', a]), ...extra]);
  const l = await proc.waitLine((x) => x.event === 'session', 'session line');
  return { proc, code: String(l.code) };
}

export interface JoinInfo { proc: Proc; socks: string; http: string; socksPort: number; httpPort: number; ready: JsonLine }

/** `broker-agent join CODE` with SOCKS and HTTP on free loopback ports. */
export async function startJoin(scope: Scope, broker: BrokerInfo, code: string, kb: string, extra: string[] = []): Promise<JoinInfo> {
  const proc = scope.spawn('join', AGENT_BIN, ['join', code, '--broker', broker.ssh, '--socks', '127.0.0.1:0', '--http', '127.0.0.1:0', '--json', '--known-brokers', kb, ...extra]);
  const ready = await proc.waitLine((x) => x.event === 'ready', 'ready line');
  const socks = String(ready.socks);
  const httpAddr = String(ready.http);
  return { proc, socks, http: httpAddr, socksPort: Number(socks.split(':').pop()), httpPort: Number(httpAddr.split(':').pop()), ready };
}

export interface RunResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }

/** Run a program to completion (async, bounded); never rejects on a non-zero exit. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { cwd: opts.cwd ?? REPO, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 30_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout, stderr: e && typeof e.code === 'string' ? `${stderr}${e.message}` : stderr,
          ms: Date.now() - started,
        });
      });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
}

/** Run curl (with no proxy variables from our own environment leaking in). */
export function curl(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return run('curl', ['--max-time', '15', '-sS', ...args], { env: opts.env ?? cleanEnv(), timeoutMs: opts.timeoutMs ?? 20_000 });
}

/** process.env without any *_proxy variables. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/_proxy$/i.test(k)) delete env[k];
  return { ...env, ...extra };
}

/** Parse `curl -i` / `-D -` output: the last response head and the body. */
export function parseCurlHead(out: string): { status: number; headers: Record<string, string>; body: string } {
  const blocks = out.split('\r\n\r\n');
  // skip "HTTP/1.1 200 Connection Established" heads of CONNECT tunnels
  let i = 0;
  while (i < blocks.length - 1 && /^HTTP\/[\d.]+ 200 Connection Established/i.test(blocks[i]!)) i++;
  const [line, ...hs] = blocks[i]!.split('\r\n');
  const headers: Record<string, string> = {};
  for (const h of hs) { const j = h.indexOf(':'); headers[h.slice(0, j).trim().toLowerCase()] = h.slice(j + 1).trim(); }
  return { status: Number(/^HTTP\/[\d.]+ (\d{3})/.exec(line ?? '')?.[1]), headers, body: blocks.slice(i + 1).join('\r\n\r\n') };
}

/** Listen on 127.0.0.1:0; returns the port. */
export async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', () => resolve()); });
  return (server.address() as net.AddressInfo).port;
}

/** Close a server and all its connections. */
export function closeServer(server: net.Server): Promise<void> {
  (server as http.Server).closeAllConnections?.();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A TCP server that tracks its connections (to count them and close them all). */
export function trackConnections(server: net.Server): { count: () => number; sockets: Set<net.Socket> } {
  let n = 0;
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => { n++; sockets.add(s); s.once('close', () => sockets.delete(s)); });
  server.on('secureConnection', () => {});
  server.once('close', () => { for (const s of sockets) s.destroy(); });
  return { count: () => n, sockets };
}

/** A plain HTTP target: `/` and `/page/N` answer a marker text, `/missing` 404. */
export async function startHttpTarget(scope: Scope, marker: string, handler?: http.RequestListener): Promise<{ server: http.Server; port: number; connections: () => number; requests: string[] }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (handler) return handler(req, res);
    if (req.url === '/missing') { res.writeHead(404, { 'content-type': 'text/plain' }); res.end('not here\n'); return; }
    const body = `${marker} ${req.url}\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.keepAliveTimeout = 30_000;
  const t = trackConnections(server);
  const port = await listen(server);
  scope.defer(() => closeServer(server));
  return { server, port, connections: t.count, requests };
}

/** Self-signed certificate (CN=test.local, 30 days) made with the openssl CLI. */
export async function selfSignedCert(dir: string): Promise<{ key: Buffer; cert: Buffer; keyFile: string; certFile: string }> {
  const keyFile = path.join(dir, 'tls-key.pem');
  const certFile = path.join(dir, 'tls-cert.pem');
  const r = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=test.local', '-days', '30', '-keyout', keyFile, '-out', certFile], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile), keyFile, certFile };
}

/** An HTTPS target with the self-signed certificate. */
export async function startHttpsTarget(scope: Scope, tlsFiles: { key: Buffer; cert: Buffer }, marker: string): Promise<{ server: https.Server; port: number }> {
  const server = https.createServer({ key: tlsFiles.key, cert: tlsFiles.cert }, (req, res) => {
    const body = `${marker} secure ${req.url}\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  trackConnections(server);
  const port = await listen(server);
  scope.defer(() => closeServer(server));
  return { server, port };
}

/** TCP connect outcome to a loopback port: 'open' or the error code (ECONNREFUSED...). */
export function probe(port: number, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const t = setTimeout(() => { s.destroy(); resolve('timeout'); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); s.destroy(); resolve('open'); });
    s.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(t); resolve(e.code ?? e.message); });
  });
}

/** Poll until `cond()` holds (bounded). */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out (${timeoutMs} ms) waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The device's view: `stream-opened` events the agent printed for `target`. */
export function deviceStreams(expose: ExposeInfo, target: string): JsonLine[] {
  return expose.proc.lines.filter((l) => l.event === 'stream-opened' && l.target === target);
}

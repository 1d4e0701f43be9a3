/**
 * Scripted diagnostics through the device: `tcp://host:port` (connect time and the
 * exact failure), `http://` and `https://` (status, time to first byte, size, and
 * for https the certificate subject, issuer and days to expiry). Checks run
 * concurrently with a bound, each with its own timeout. Pure logic over a
 * StreamOpener, so it works for the CLI and for scripts alike.
 */
import http from 'node:http';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { BrokerError, describeError, type BrokerErrorCode } from '../errors';
import { makeTarget, printable, type Target } from '../protocol/target';
import type { StreamOpener } from './stream-opener';

export type CheckKind = 'tcp' | 'http' | 'https';

/** One check to run. */
export interface CheckSpec {
  url: string;
  kind: CheckKind;
  target: Target;
  /** Path and query for http(s). */
  path: string;
}

export interface TlsInfo {
  subject: string;
  issuer: string;
  validTo: string;
  daysLeft: number;
  authorized: boolean;
  authorizationError?: string;
}

/** The outcome of one check (also the `--json` line). */
export interface CheckResult {
  check: string;
  kind: CheckKind;
  ok: boolean;
  connectMs?: number;
  ttfbMs?: number;
  totalMs: number;
  status?: number;
  bytes?: number;
  tls?: TlsInfo;
  error?: { code: BrokerErrorCode; message: string };
}

export interface DiagOptions {
  concurrency?: number;
  timeoutMs?: number;
  insecure?: boolean;
  onResult?: (r: CheckResult, done: number, total: number) => void;
}

/** Parse a check URL; throws BRK_BAD_OPTION with an example on anything else. */
export function parseCheck(text: string): CheckSpec {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new BrokerError('BRK_BAD_OPTION', `bad check "${printable(text)}": expected tcp://HOST:PORT, http://HOST/PATH or https://HOST/PATH`);
  }
  const kind = url.protocol.replace(/:$/, '');
  if (kind !== 'tcp' && kind !== 'http' && kind !== 'https') {
    throw new BrokerError('BRK_BAD_OPTION', `bad check "${printable(text)}": unknown scheme ${url.protocol} (use tcp://, http:// or https://)`);
  }
  const port = url.port ? Number(url.port) : kind === 'https' ? 443 : kind === 'http' ? 80 : NaN;
  if (kind === 'tcp' && !url.port) throw new BrokerError('BRK_BAD_OPTION', `bad check "${printable(text)}": tcp:// needs a port, e.g. tcp://10.0.0.5:22`);
  let target: Target;
  try {
    target = makeTarget(url.hostname, port);
  } catch (err) {
    throw new BrokerError('BRK_BAD_OPTION', `bad check "${printable(text)}": ${(err as Error).message}`);
  }
  return { url: text.trim(), kind, target, path: `${url.pathname || '/'}${url.search}` };
}

/** Parse a checks file: one URL per line, `#` comments and blank lines ignored. */
export function parseChecksFile(text: string): CheckSpec[] {
  return text.split(/\r?\n/).map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean).map(parseCheck);
}

/** Run checks with bounded concurrency; results come back in input order. */
export async function runChecks(opener: StreamOpener, checks: CheckSpec[], opts: DiagOptions = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = new Array(checks.length);
  const limit = Math.max(1, Math.min(opts.concurrency ?? 8, 64));
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < checks.length) {
      const i = next++;
      results[i] = await runOne(opener, checks[i]!, opts);
      opts.onResult?.(results[i]!, ++done, checks.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, checks.length) }, worker));
  return results;
}

async function runOne(opener: StreamOpener, spec: CheckSpec, opts: DiagOptions): Promise<CheckResult> {
  const started = performance.now();
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const base = { check: spec.url, kind: spec.kind };
  let stream: Duplex | undefined;
  try {
    const opened = await raceAbort(opener.open(spec.target, ac.signal), ac.signal, timeoutMs);
    stream = opened.stream;
    const connectMs = round(performance.now() - started);
    if (spec.kind === 'tcp') return { ...base, ok: true, connectMs, totalMs: connectMs };
    let transport: Duplex = stream;
    let tlsInfo: TlsInfo | undefined;
    if (spec.kind === 'https') {
      const secure = await startTls(stream, spec.target.kind === 'domain' ? spec.target.host : undefined, !opts.insecure, ac.signal, timeoutMs);
      transport = secure;
      tlsInfo = certificateInfo(secure);
    }
    const r = await httpGet(transport, spec, ac.signal, timeoutMs, started);
    const ok = r.status < 400;
    return { ...base, ok, connectMs, ttfbMs: r.ttfbMs, totalMs: round(performance.now() - started), status: r.status, bytes: r.bytes, tls: tlsInfo, ...(ok ? {} : { error: { code: 'BRK_BAD_REQUEST' as const, message: `HTTP ${r.status}` } }) };
  } catch (err) {
    const e = err instanceof BrokerError ? err : tlsOrHttpError(err);
    return { ...base, ok: false, totalMs: round(performance.now() - started), error: { code: e.code, message: e.message } };
  } finally {
    clearTimeout(timer);
    stream?.destroy();
  }
}

function startTls(stream: Duplex, servername: string | undefined, verify: boolean, signal: AbortSignal, timeoutMs: number): Promise<tls.TLSSocket> {
  return raceAbort(new Promise<tls.TLSSocket>((resolve, reject) => {
    const secure = tls.connect({ socket: stream, servername, rejectUnauthorized: verify, ALPNProtocols: ['http/1.1'] });
    secure.once('secureConnect', () => resolve(secure));
    secure.once('error', reject);
  }), signal, timeoutMs);
}

function certificateInfo(s: tls.TLSSocket): TlsInfo | undefined {
  const cert = s.getPeerCertificate();
  if (!cert || !cert.valid_to) return undefined;
  const name = (x: Record<string, string | string[] | undefined> | undefined) => {
    const v = x?.CN ?? x?.O;
    return Array.isArray(v) ? v.join(', ') : (v ?? '');
  };
  const validTo = new Date(cert.valid_to);
  return {
    subject: name(cert.subject as unknown as Record<string, string>),
    issuer: name(cert.issuer as unknown as Record<string, string>),
    validTo: validTo.toISOString(),
    daysLeft: Math.floor((validTo.getTime() - Date.now()) / 86_400_000),
    authorized: s.authorized,
    authorizationError: s.authorizationError ? String(s.authorizationError) : undefined,
  };
}

function httpGet(transport: Duplex, spec: CheckSpec, signal: AbortSignal, timeoutMs: number, started: number): Promise<{ status: number; ttfbMs: number; bytes: number }> {
  return raceAbort(new Promise((resolve, reject) => {
    const host = spec.target.kind === 'ipv6' ? `[${spec.target.host}]` : spec.target.host;
    const defaultPort = spec.kind === 'https' ? 443 : 80;
    const req = http.request({
      createConnection: () => transport as never,
      method: 'GET',
      path: spec.path,
      headers: { host: spec.target.port === defaultPort ? host : `${host}:${spec.target.port}`, 'user-agent': 'broker-agent-diag/1', connection: 'close' },
    });
    req.once('response', (res) => {
      const ttfbMs = round(performance.now() - started);
      let bytes = 0;
      res.on('data', (c: Buffer) => { bytes += c.length; });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, ttfbMs, bytes }));
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end();
  }), signal, timeoutMs);
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal, timeoutMs: number): Promise<T> {
  if (signal.aborted) return Promise.reject(timeoutError(timeoutMs));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(timeoutError(timeoutMs));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v); }, (e) => { signal.removeEventListener('abort', onAbort); reject(e); });
  });
}

function timeoutError(ms: number): BrokerError {
  return new BrokerError('BRK_TIMEOUT', `no answer within ${ms} ms`);
}

function tlsOrHttpError(err: unknown): BrokerError {
  const code = (err as { code?: string }).code ?? '';
  if (/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO|HOSTNAME/.test(code)) {
    return new BrokerError('BRK_BAD_REQUEST', `TLS: ${describeError(err)} (use --insecure to check anyway)`);
  }
  if (code === 'ECONNRESET') return new BrokerError('BRK_CONN_REFUSED', 'the server closed the connection');
  return new BrokerError('BRK_INTERNAL', describeError(err));
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

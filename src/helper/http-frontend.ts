/**
 * The helper's local HTTP proxy. `CONNECT host:port` (HTTPS, any TCP) becomes a
 * tunnel stream; absolute-form requests (`GET http://host/path`) go through
 * http-proxy over a keep-alive TunnelAgent. Failures are honest and distinct:
 * 403 policy denied, 502 refused/unreachable, 504 timeout, each with a one-line
 * body and the `X-Broker-Error` header carrying the BRK_* code.
 */
import http from 'node:http';
import type net from 'node:net';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { BrokerError, describeError, fromSocksReply, toHttpStatus, type BrokerErrorCode } from '../errors';
import { silentLogger, type Logger } from '../log';
import { formatTarget, makeTarget, parseTarget, printable, type Target } from '../protocol/target';
import { watchWhileOpening } from '../transport/early-close';
import { boundAddress, listenOn, stopServer } from '../transport/listen';
import { relay } from '../transport/relay';
import type { FastOpener } from './fast-open';
import type { StreamOpener } from './stream-opener';
import { TunnelAgent } from './tunnel-agent';

/** Hop-by-hop headers (RFC 9110 section 7.6.1) never forwarded, plus proxy credentials. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'];

export interface HttpFrontendOptions {
  /** Largest request head (request line + headers); beyond it: 431. */
  maxHeaderBytes?: number;
  /** Largest request body; beyond it: 413. */
  maxBodyBytes?: number;
  /** Time a client has to send its request head. */
  headersTimeoutMs?: number;
  /** Answer CONNECT at once where the descriptor allows the target outright (`fast-open.ts`). */
  fast?: FastOpener;
}

export interface HttpFrontendEvents {
  stream: [{
    target: string; method: string; status: number; code?: BrokerErrorCode; reason?: string;
    /** Fast open: the client had been answered 200, so it saw its connection reset instead of `status`. */
    reset?: boolean;
  }];
}

export class HttpFrontend extends EventEmitter<HttpFrontendEvents> {
  private readonly server: http.Server;
  private readonly proxy: httpProxy;
  private readonly agent: TunnelAgent;
  private readonly sockets = new Set<net.Socket>();
  private readonly tunnels = new Set<Duplex>();
  private readonly maxBodyBytes: number;
  private readonly fast: FastOpener | undefined;
  /** Destination label per absolute-form request, so error events name it. */
  private readonly labels = new WeakMap<http.IncomingMessage, string>();
  /** Responses already answered (and reported) with an error. */
  private readonly failed = new WeakSet<http.ServerResponse>();

  constructor(private readonly opener: StreamOpener, private readonly log: Logger = silentLogger, opts: HttpFrontendOptions = {}) {
    super();
    this.maxBodyBytes = opts.maxBodyBytes ?? 1024 * 1024 * 1024;
    this.fast = opts.fast;
    this.agent = new TunnelAgent(opener, {}, opts.fast);
    this.proxy = httpProxy.createProxyServer({ agent: this.agent, xfwd: false, proxyTimeout: 0, ws: false });
    this.proxy.on('proxyRes', (proxyRes) => stripHopByHop(proxyRes.headers));
    this.proxy.on('error', (err, req, res) => this.onProxyError(err, req, res as http.ServerResponse | net.Socket));
    this.server = http.createServer({
      maxHeaderSize: opts.maxHeaderBytes ?? 16 * 1024,
      headersTimeout: opts.headersTimeoutMs ?? 15_000,
      requestTimeout: 0,
      noDelay: true,
      keepAlive: true,
    });
    this.server.on('connection', (s: net.Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    this.server.on('request', (req, res) => this.onRequest(req, res));
    this.server.on('connect', (req, socket: net.Socket, head) => void this.onConnect(req, socket, head));
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket));
  }

  /** Listen; resolves when bound. Port 0 picks a free port. */
  start(host: string, port: number): Promise<void> {
    return listenOn(this.server, host, port, 'HTTP', '--http');
  }

  address(): { host: string; port: number } {
    return boundAddress(this.server);
  }

  /** Stop listening, cut clients and tunnels, drop pooled upstream streams. Idempotent. */
  close(): Promise<void> {
    this.agent.destroy();
    return stopServer(this.server, [...this.sockets, ...this.tunnels]);
  }

  /** Absolute-form request: `GET http://host:port/path HTTP/1.1`. */
  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      return this.reply(res, new BrokerError('BRK_BAD_REQUEST', `"${printable(req.url ?? '')}" is not an absolute URL; configure this as an HTTP proxy (curl -x http://HOST:PORT)`), req.method);
    }
    if (url.protocol !== 'http:') {
      return this.reply(res, new BrokerError('BRK_UNSUPPORTED', `${url.protocol} URLs go through CONNECT; use http:// or an https:// URL with CONNECT`), req.method);
    }
    let target: Target;
    try {
      target = makeTarget(url.hostname, url.port ? Number(url.port) : 80);
    } catch (err) {
      return this.reply(res, err as BrokerError, req.method);
    }
    const label = formatTarget(target);
    this.labels.set(req, label);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.maxBodyBytes) {
      return this.reply(res, new BrokerError('BRK_BAD_REQUEST', `request body of ${declared} bytes is over the ${this.maxBodyBytes}-byte limit`), req.method, 413);
    }
    let seen = 0;
    req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > this.maxBodyBytes) {
        this.reply(res, new BrokerError('BRK_BAD_REQUEST', `request body is over the ${this.maxBodyBytes}-byte limit`), req.method, 413);
        req.destroy();
      }
    });
    stripHopByHop(req.headers);
    req.url = `${url.pathname}${url.search}`;
    res.once('finish', () => { if (!this.failed.has(res)) this.emit('stream', { target: label, method: req.method ?? '?', status: res.statusCode }); });
    this.proxy.web(req, res, { target: `http://${target.kind === 'ipv6' ? `[${target.host}]` : target.host}:${target.port}`, changeOrigin: false });
  }

  /** `CONNECT host:port`: a raw tunnel stream. */
  private async onConnect(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    socket.setNoDelay(true);
    socket.on('error', (err) => this.log.debug('CONNECT client error', { error: describeError(err) }));
    let target: Target;
    try {
      target = parseTarget(req.url ?? '');
    } catch (err) {
      return this.rawReply(socket, err as BrokerError, 'CONNECT');
    }
    const label = formatTarget(target);
    const verdict = this.fast?.judge(target);
    if (verdict instanceof BrokerError) return this.rawReply(socket, verdict, 'CONNECT', label);
    if (verdict === 'now' && this.fast) {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      const out = await this.fast.carry(socket, target, { head, onOpen: () => this.emit('stream', { target: label, method: 'CONNECT', status: 200 }) });
      if (out && out.rep !== 0) {
        // The client was told 200 and has been reset; the event still says why.
        const code = fromSocksReply(out.rep);
        this.emit('stream', { target: label, method: 'CONNECT', status: toHttpStatus(code), code, reason: out.reason, reset: true });
      }
      return;
    }
    // A client that gives up while we open (FIN) cancels the open on the device.
    const watch = watchWhileOpening(socket);
    let early: Buffer = Buffer.alloc(0);
    try {
      const opened = await this.opener.open(target, watch.signal).finally(() => { early = watch.stop(); });
      if (socket.destroyed || watch.signal.aborted) {
        opened.stream.destroy();
        socket.destroy();
        return;
      }
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length || early.length) opened.stream.write(Buffer.concat([head, early]));
      this.emit('stream', { target: label, method: 'CONNECT', status: 200 });
      this.tunnels.add(opened.stream);
      await relay(socket, opened.stream);
      this.tunnels.delete(opened.stream);
    } catch (err) {
      this.rawReply(socket, err instanceof BrokerError ? err : new BrokerError('BRK_INTERNAL', describeError(err)), 'CONNECT', label);
    }
  }

  private onProxyError(err: Error, req: http.IncomingMessage, res: http.ServerResponse | net.Socket): void {
    const e = err instanceof BrokerError ? err : upstreamError(err);
    this.log.info('http request failed', { url: req.url, code: e.code, reason: e.message });
    if ('writeHead' in res) this.reply(res, e, req.method);
    else res.destroy();
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (!socket.writable) return void socket.destroy();
    const code = err.code ?? '';
    const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'ERR_HTTP_REQUEST_TIMEOUT' || code === 'ERR_HTTP_HEADERS_TIMEOUT' ? 408 : 400;
    const text = status === 431 ? 'request head too large' : status === 408 ? 'request head not received in time' : `malformed HTTP request (${code || describeError(err)})`;
    socket.end(rawResponse(status, 'BRK_BAD_REQUEST', text));
  }

  /** Answer with an error status, the X-Broker-Error header and a one-line body. */
  private reply(res: http.ServerResponse, err: BrokerError, method?: string, status = toHttpStatus(err.code)): void {
    if (!this.failed.has(res)) {
      this.failed.add(res);
      this.emit('stream', { target: this.labels.get(res.req) ?? '?', method: method ?? '?', status, code: err.code, reason: err.message });
    }
    if (res.headersSent) return void res.destroy();
    const body = `${err.message.replace(/[\r\n]+/g, ' ')}\n`;
    res.writeHead(status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'X-Broker-Error': err.code,
      Connection: 'close',
    });
    res.end(body);
  }

  private rawReply(socket: net.Socket, err: BrokerError, method: string, target = '?'): void {
    const status = toHttpStatus(err.code);
    this.emit('stream', { target, method, status, code: err.code, reason: err.message });
    if (!socket.destroyed) socket.end(rawResponse(status, err.code, err.message));
  }
}

function stripHopByHop(headers: http.IncomingHttpHeaders): void {
  const listed = String(headers.connection ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
  for (const h of [...HOP_BY_HOP, ...listed]) delete headers[h];
}

/** Errors from the upstream server itself (after the tunnel opened). */
function upstreamError(err: NodeJS.ErrnoException): BrokerError {
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return new BrokerError('BRK_CONN_REFUSED', `the upstream server closed the connection (${err.code})`);
  if (err.code === 'ETIMEDOUT' || err.code === 'ESOCKETTIMEDOUT') return new BrokerError('BRK_TIMEOUT', 'the upstream server did not answer in time');
  return new BrokerError('BRK_INTERNAL', describeError(err));
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 403: 'Forbidden', 405: 'Method Not Allowed', 408: 'Request Timeout', 413: 'Content Too Large',
  429: 'Too Many Requests', 431: 'Request Header Fields Too Large', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

function rawResponse(status: number, code: string, message: string): string {
  const body = `${message.replace(/[\r\n]+/g, ' ')}\n`;
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Broker-Error: ${code}\r\nConnection: close\r\n\r\n${body}`;
}

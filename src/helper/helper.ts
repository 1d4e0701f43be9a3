/**
 * `broker-agent join CODE`: the helper side. Connects to the broker with the
 * session code as SSH user name, receives the device's descriptor on the
 * `describe` control channel, and serves a local SOCKS5 port whose streams go
 * through the broker and the device's reverse tunnel.
 */
import { EventEmitter } from 'node:events';
import type { Client } from 'ssh2';
import { BrokerError, describeError } from '../errors';
import { silentLogger, type Logger } from '../log';
import { formatHostPort } from '../config';
import { DESCRIBE_COMMAND } from '../protocol/constants';
import { readControlEvents, type ControlEvent, type HelperInfo } from '../protocol/control';
import { descriptorPolicy, parseDescriptor, type Descriptor } from '../protocol/descriptor';
import { normalizeSessionCode } from '../protocol/session-code';
import { generateIdentity, type Identity } from '../transport/keys';
import { connectSsh, execChannel } from '../transport/ssh-client';
import { FastOpener } from './fast-open';
import { HttpFrontend, type HttpFrontendEvents } from './http-frontend';
import { SocksFrontend, type SocksFrontendEvents } from './socks-frontend';
import { SshStreamOpener } from './stream-opener';

export interface JoinOptions {
  code: string;
  broker: string;
  /** Local SOCKS5 listen address (default 127.0.0.1:1080; port 0 = any free port). */
  socks?: { host: string; port: number };
  /** Local HTTP proxy listen address (default 127.0.0.1:3128; null = no HTTP proxy). */
  http?: { host: string; port: number } | null;
  identity?: Identity;
  fingerprint?: string;
  knownBrokersFile?: string;
  log?: Logger;
  /**
   * Answer SOCKS and CONNECT requests at once where the device's descriptor allows the
   * target outright, so the client's first bytes travel with the request (`fast-open.ts`).
   * A device-side failure then resets the client's connection instead of a SOCKS reply.
   */
  fastOpen?: boolean;
}

export interface HelperEvents {
  event: [ControlEvent];
  stream: SocksFrontendEvents['stream'];
  'http-stream': HttpFrontendEvents['stream'];
  'new-host-key': [string];
  /** The session is over or the connection was lost; the helper has closed. */
  ended: [BrokerError];
}

/** What `start()` resolves with. */
export interface JoinReady {
  socks: string;
  socksUrl: string;
  /** `HOST:PORT` of the HTTP proxy, if enabled. */
  http?: string;
  httpProxyUrl?: string;
  descriptor: Descriptor;
  helper: HelperInfo;
}

export class Helper extends EventEmitter<HelperEvents> {
  private client: Client | undefined;
  private socks: SocksFrontend | undefined;
  private http: HttpFrontend | undefined;
  private fast: FastOpener | undefined;
  private readonly log: Logger;
  private closed = false;
  private endedEmitted = false;
  descriptor: Descriptor | undefined;
  /** Opens streams through the tunnel (for extra front-ends and the programmatic API). */
  opener: SshStreamOpener | undefined;

  constructor(private readonly opts: JoinOptions) {
    super();
    this.log = opts.log ?? silentLogger;
  }

  async start(): Promise<JoinReady> {
    const code = normalizeSessionCode(this.opts.code);
    if (!code) throw new BrokerError('BRK_BAD_CODE', `"${this.opts.code.slice(0, 40)}" is not a session code (expected something like abcd123-efgh456-jkmn789)`);
    const identity = this.opts.identity ?? generateIdentity('broker-agent join');
    const { client } = await connectSsh({
      broker: this.opts.broker, username: code, identity,
      fingerprint: this.opts.fingerprint, knownBrokersFile: this.opts.knownBrokersFile,
      onNewHostKey: (fp) => this.emit('new-host-key', fp),
    });
    this.client = client;
    client.on('error', (err) => this.log.debug('ssh error', { error: describeError(err) }));
    client.once('close', () => this.finish(new BrokerError('BRK_BROKER_UNREACHABLE', 'connection to the broker was lost')));

    const control = await execChannel(client, DESCRIBE_COMMAND);
    const hello = await readControlEvents(control, 'hello', (ev) => {
      this.emit('event', ev as ControlEvent);
      if (ev.event === 'session-ended') {
        this.finish(new BrokerError('BRK_SESSION_ENDED', `session ended: ${String(ev.message ?? ev.reason)}`));
      }
    }).catch((err) => { this.close(); throw err; });

    this.descriptor = parseDescriptor(hello.descriptor);
    this.opener = new SshStreamOpener(client);
    if (this.opts.fastOpen) this.fast = new FastOpener(client, descriptorPolicy(this.descriptor));
    this.socks = new SocksFrontend(this.opener, this.log.child('socks'), this.fast);
    this.socks.on('stream', (ev) => this.emit('stream', ev));
    const listen = this.opts.socks ?? { host: '127.0.0.1', port: 1080 };
    const httpListen = this.opts.http === undefined ? { host: '127.0.0.1', port: 3128 } : this.opts.http;
    try {
      await this.socks.start(listen.host, listen.port);
      if (httpListen) {
        this.http = new HttpFrontend(this.opener, this.log.child('http'), { fast: this.fast });
        this.http.on('stream', (ev) => this.emit('http-stream', ev));
        await this.http.start(httpListen.host, httpListen.port);
      }
    } catch (err) {
      this.close();
      throw err;
    }
    const a = this.socks.address();
    const socks = formatHostPort(a.host, a.port);
    const ready: JoinReady = { socks, socksUrl: `socks5h://${socks}`, descriptor: this.descriptor, helper: hello.helper as HelperInfo };
    if (this.http) {
      const h = this.http.address();
      ready.http = formatHostPort(h.host, h.port);
      ready.httpProxyUrl = `http://${ready.http}`;
    }
    return ready;
  }

  private finish(err: BrokerError): void {
    // a close() we were asked for is not an 'ended' error (the SSH 'close' that follows it is expected)
    if (this.endedEmitted || this.closed) return;
    this.endedEmitted = true;
    this.close();
    this.emit('ended', err);
  }

  /** Close the local port and the SSH connection. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fast?.close();
    void this.socks?.close();
    void this.http?.close();
    this.client?.end();
  }
}

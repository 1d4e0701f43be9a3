/**
 * The programmatic API: join a session, expose a device, or run a broker from a
 * script. Each function resolves once the role is up and returns a handle with
 * the useful addresses, an event emitter and an idempotent `close()`.
 *
 * ```ts
 * import { join } from 'remote-assist-broker';
 * const s = await join({ code: 'abcd123-efgh456-jkmn789', broker: 'broker.example.com:2222' });
 * // s.socksUrl = 'socks5h://127.0.0.1:PORT', s.httpProxyUrl = 'http://127.0.0.1:PORT'
 * await s.close();
 * ```
 */
// First, before ssh2 loads: pooled SSH packet padding, cheaper channel closes.
import { installLibraryTuning } from './transport/process-tuning';
installLibraryTuning();
import { Agent } from './agent/agent';
import { Broker, type BrokerOptions } from './broker/broker';
import { Helper, type HelperEvents } from './helper/helper';
import { runChecks, parseCheck, type CheckResult, type DiagOptions } from './helper/diag';
import { makeDescriptor, type Descriptor } from './protocol/descriptor';
import type { Identity } from './transport/keys';
import type { Logger } from './log';
import type { EventEmitter } from 'node:events';
import type { StreamOpener } from './helper/stream-opener';

export { BrokerError, type BrokerErrorCode } from './errors';
export type { Descriptor } from './protocol/descriptor';
export type { ControlEvent } from './protocol/control';
export type { CheckResult } from './helper/diag';
export { generateIdentity, loadIdentity, type Identity } from './transport/keys';
export { createLogger, type Logger } from './log';
/**
 * Optional for API users: the V8 and GC settings our CLIs apply for relaying throughput
 * (see docs/performance.md): applyProcessTuning at startup, applyRunningTuning once serving.
 */
export { applyProcessTuning, applyRunningTuning } from './transport/process-tuning';
export { Broker, Agent, Helper };

/** Options shared by the client roles. */
export interface ClientOptions {
  /** Broker address `HOST:PORT`. */
  broker: string;
  /** Pin the broker's host key (`SHA256:...`); otherwise trust on first use. */
  fingerprint?: string;
  /** Trust-on-first-use file (default `$XDG_CONFIG_HOME/remote-assist/known_brokers`). */
  knownBrokersFile?: string;
  identity?: Identity;
  log?: Logger;
}

export interface JoinOptions extends ClientOptions {
  code: string;
  /** Local SOCKS5 address; default `127.0.0.1:0` (any free port) for scripts. */
  socks?: { host: string; port: number };
  /** Local HTTP proxy address; default `127.0.0.1:0`; `null` for none. */
  http?: { host: string; port: number } | null;
}

/** A joined session. */
export interface JoinedSession {
  /** `socks5h://127.0.0.1:PORT` (names resolve on the device). */
  socksUrl: string;
  /** `http://127.0.0.1:PORT`, unless the HTTP proxy was disabled. */
  httpProxyUrl?: string;
  descriptor: Descriptor;
  /** `event` (control events), `stream`, `http-stream`, `ended`. */
  events: EventEmitter<HelperEvents>;
  /** Open a raw stream to a host on the device's network. */
  opener: StreamOpener;
  /** Run diagnostics checks (`tcp://`, `http://`, `https://`) through the device. */
  check(urls: string[], opts?: DiagOptions): Promise<CheckResult[]>;
  close(): Promise<void>;
}

/** Join a session as a helper. */
export async function join(opts: JoinOptions): Promise<JoinedSession> {
  const helper = new Helper({
    ...opts,
    socks: opts.socks ?? { host: '127.0.0.1', port: 0 },
    http: opts.http === undefined ? { host: '127.0.0.1', port: 0 } : opts.http,
  });
  const ready = await helper.start();
  return {
    socksUrl: ready.socksUrl,
    httpProxyUrl: ready.httpProxyUrl,
    descriptor: ready.descriptor,
    events: helper,
    opener: helper.opener!,
    check: (urls, o) => runChecks(helper.opener!, urls.map(parseCheck), o),
    close: async () => helper.close(),
  };
}

export interface ExposeOptions extends ClientOptions {
  /** What helpers may reach (default: private ranges). */
  allow?: string[];
  deny?: string[];
  label?: string;
  maxHelpers?: number;
  expiresAt?: string;
}

/** An exposed device. */
export interface ExposedSession {
  code: string;
  /** The command a helper runs to join. */
  helperCommand: string;
  descriptor: Descriptor;
  /** `event` (helper-joined, helper-left, session-ended...), `stream-opened`, `stream-closed`, `ended`. */
  events: Agent;
  close(): Promise<void>;
}

/** Expose this machine's network to helpers. */
export async function expose(opts: ExposeOptions): Promise<ExposedSession> {
  const descriptor = makeDescriptor({ label: opts.label, allow: opts.allow ?? [], deny: opts.deny ?? [], maxHelpers: opts.maxHelpers, expiresAt: opts.expiresAt });
  const agent = new Agent({ ...opts, descriptor });
  const session = await agent.start();
  return {
    code: session.code,
    helperCommand: session.helperCommand,
    descriptor,
    events: agent,
    close: async () => agent.close(),
  };
}

/** Run a broker; `address()` gives the bound port when `port: 0`. */
export async function serve(opts: BrokerOptions): Promise<Broker> {
  const broker = new Broker(opts);
  await broker.start();
  return broker;
}


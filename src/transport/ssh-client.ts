/**
 * SSH client plumbing shared by the agent and the helper: TCP connect with
 * TCP_NODELAY (ssh2 leaves Nagle on, which delays every channel open ~40 ms),
 * host-key pinning, public-key auth, keepalive, and translation of ssh2's opaque
 * failures into typed errors with messages users already know.
 */
import net from 'node:net';
import { Client, type ClientChannel } from 'ssh2';
import { BrokerError, describeError, isBrokerErrorCode } from '../errors';
import { SSH_IDENT, Timeouts } from '../protocol/constants';
import { parseTarget, formatTarget } from '../protocol/target';
import { coalesceWrites } from './coalesce';
import type { Identity } from './keys';
import { createHostKeyVerifier } from './known-brokers';
import { patchChannelOverrun } from './ssh2-channel';

export interface SshConnectOptions {
  /** Broker address `HOST:PORT`. */
  broker: string;
  /** SSH user name: `expose` for agents, the session code for helpers. */
  username: string;
  identity: Identity;
  /** Pinned broker host key (`--fingerprint`); otherwise trust on first use. */
  fingerprint?: string;
  /** known-brokers file for trust on first use. */
  knownBrokersFile?: string;
  /** Called when a broker's key is seen for the first time and remembered. */
  onNewHostKey?: (fingerprint: string) => void;
  readyTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Features this client announces as comments in its SSH identification string (`SSH-2.0-software comments`). */
  features?: readonly string[];
}

export interface SshConnection {
  client: Client;
  /** The TCP socket under the SSH connection. */
  socket: net.Socket;
}

/** Connect and authenticate; resolves when the SSH connection is ready. */
export function connectSsh(opts: SshConnectOptions): Promise<SshConnection> {
  let brokerTarget;
  try {
    brokerTarget = parseTarget(opts.broker);
  } catch {
    return Promise.reject(new BrokerError('BRK_BAD_OPTION', `bad --broker "${opts.broker}": expected HOST:PORT, e.g. broker.example.com:2222`));
  }
  const broker = formatTarget(brokerTarget);
  const verifier = createHostKeyVerifier({
    broker,
    fingerprint: opts.fingerprint,
    knownBrokersFile: opts.knownBrokersFile,
    onNewKey: opts.onNewHostKey,
  });

  patchChannelOverrun(); // a broker that ignores our windows cannot make us buffer without bound
  return new Promise((resolve, reject) => {
    const client = new Client();
    let refusal: { code: string; message: string } | undefined;
    let settled = false;
    // The broker explains refusals (wrong code, rate limit) as keyboard-interactive instructions.
    const noteRefusal = (name: unknown, instructions: unknown) => {
      const m = typeof name === 'string' ? /(BRK_[A-Z_]+)/.exec(name) : null;
      if (m && typeof instructions === 'string' && instructions) refusal = { code: m[1]!, message: instructions };
    };
    const socket = net.connect({ host: brokerTarget.host, port: brokerTarget.port });
    socket.setNoDelay(true);
    coalesceWrites(socket);
    const fail = (err: BrokerError) => {
      if (settled) return;
      settled = true;
      client.end();
      socket.destroy();
      reject(err);
    };
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'ECONNREFUSED' ? ' (is `broker serve` running there? check --broker)' : '';
      fail(new BrokerError('BRK_BROKER_UNREACHABLE', `cannot reach broker ${broker}: ${err.code ?? describeError(err)}${hint}`, { cause: err }));
    });
    socket.once('connect', () => {
      client.connect({
        sock: socket,
        username: opts.username,
        privateKey: opts.identity.privateKey,
        hostVerifier: (key: Buffer) => verifier.verify(key),
        tryKeyboard: true,
        readyTimeout: opts.readyTimeoutMs ?? Timeouts.sshReady,
        keepaliveInterval: opts.keepaliveIntervalMs ?? 15_000,
        keepaliveCountMax: opts.keepaliveCountMax ?? 3,
        ident: opts.features?.length ? `${SSH_IDENT} ${opts.features.join(' ')}` : SSH_IDENT,
        // Our broker is not OpenSSH, but speaks its direct-streamlocal extension.
        strictVendor: false,
      });
      // ssh2 answers a request with zero prompts (which is what the broker sends) by itself
      // and never emits 'keyboard-interactive', so read the text where the protocol hands it over.
      hookInfoRequest(client, noteRefusal);
    });
    client.on('keyboard-interactive', (name, instructions, _lang, _prompts, finish) => {
      noteRefusal(name, instructions);
      finish([]);
    });
    client.once('ready', () => {
      if (settled) return;
      settled = true;
      socket.removeAllListeners('error');
      socket.on('error', () => { /* surfaced through the client */ });
      resolve({ client, socket });
    });
    client.once('error', (err: Error & { level?: string }) => {
      const hostKeyError = verifier.error();
      if (hostKeyError) return fail(hostKeyError);
      if (refusal) {
        const code = isBrokerErrorCode(refusal.code) ? refusal.code : 'BRK_AUTH_FAILED';
        return fail(new BrokerError(code, refusal.message));
      }
      if (err.level === 'client-authentication') {
        return fail(new BrokerError('BRK_AUTH_FAILED', `${broker}: Permission denied (publickey) for user "${opts.username}"`, { cause: err }));
      }
      if (err.level === 'client-timeout') {
        return fail(new BrokerError('BRK_TIMEOUT', `${broker}: no SSH handshake within ${opts.readyTimeoutMs ?? Timeouts.sshReady} ms (is it really the broker's SSH port?)`, { cause: err }));
      }
      fail(new BrokerError('BRK_BROKER_UNREACHABLE', `${broker}: ${describeError(err)}`, { cause: err }));
    });
    client.once('close', () => fail(new BrokerError('BRK_BROKER_UNREACHABLE', `${broker}: connection closed during the SSH handshake`)));
  });
}

interface ProtocolHandlers {
  USERAUTH_INFO_REQUEST?: (proto: unknown, name: unknown, instructions: unknown, prompts: unknown) => unknown;
}

/**
 * Let `onInfo` see every keyboard-interactive request's name and instructions,
 * including zero-prompt ones that ssh2 answers internally. Relies on ssh2's
 * internal handler table (created by `connect()`); if that changes shape, only
 * requests with prompts are seen (through the public event).
 */
function hookInfoRequest(client: Client, onInfo: (name: unknown, instructions: unknown) => void): void {
  const handlers = (client as unknown as { _protocol?: { _handlers?: ProtocolHandlers } })._protocol?._handlers;
  const original = handlers?.USERAUTH_INFO_REQUEST;
  if (!handlers || typeof original !== 'function') return;
  handlers.USERAUTH_INFO_REQUEST = (proto, name, instructions, prompts) => {
    onInfo(name, instructions);
    return original.call(handlers, proto, name, instructions, prompts);
  };
}

/** Open an exec channel, as a promise. */
export function execChannel(client: Client, command: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, channel) => {
      if (err) reject(new BrokerError('BRK_INTERNAL', `broker refused the ${command} channel: ${describeError(err)}`, { cause: err }));
      else resolve(channel);
    });
  });
}

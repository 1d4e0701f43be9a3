/**
 * The two halves of a SOCKS5 CONNECT as every role runs them on a stream:
 * - `acceptSocksConnect`: the server side (helper front-end, broker in-band endpoint,
 *   device), greeting → method selection → request;
 * - `requestSocksConnect`: the client side (broker → device, helper → broker),
 *   pipelined in one write, then the reply and, on failure, the peer's one-line reason.
 * Each caller keeps its own policy for answering errors; these only speak the protocol.
 */
import type { Duplex } from 'node:stream';
import { BrokerError, socksReplyMessage } from '../errors';
import {
  encodeGreeting, encodeMethodSelection, encodeRequest, parseGreeting, parseMethodSelection, parseReply, parseRequest,
  SocksMethod, type SocksBound,
} from './socks5';
import { encodeAuthStatus, encodeUserPass, parseAuthStatus, parseUserPass } from './socks-auth';
import { readMessage } from './socks-stream';
import { formatTarget, type Target } from './target';

/** What a SOCKS client asked for. */
export interface SocksConnectRequest {
  command: number;
  target: Target;
  /** RFC 1929 user name, when the client labelled the stream (our broker does). */
  label?: string;
}

/**
 * Read the greeting, choose a method, read the request. Resolves undefined when no
 * offered method is acceptable (`05 FF` has been sent and the stream ended). Rejects
 * with readMessage's errors (a SocksProtocolError carries the reply to send).
 */
export async function acceptSocksConnect(
  stream: Duplex,
  opts: { timeoutMs: number; idleTimeoutMs?: number; acceptLabel?: boolean },
): Promise<SocksConnectRequest | undefined> {
  const greeting = await readMessage(stream, parseGreeting, { timeoutMs: opts.timeoutMs, idleTimeoutMs: opts.idleTimeoutMs, what: 'SOCKS greeting' });
  let label: string | undefined;
  if (opts.acceptLabel && greeting.methods.includes(SocksMethod.USERNAME_PASSWORD)) {
    stream.write(encodeMethodSelection(SocksMethod.USERNAME_PASSWORD));
    label = (await readMessage(stream, parseUserPass, { timeoutMs: opts.timeoutMs, what: 'SOCKS auth' })).user;
    stream.write(encodeAuthStatus(true));
  } else if (greeting.methods.includes(SocksMethod.NO_AUTH)) {
    stream.write(encodeMethodSelection(SocksMethod.NO_AUTH));
  } else {
    stream.end(Buffer.from([5, 0xff]));
    return undefined;
  }
  const request = await readMessage(stream, parseRequest, { timeoutMs: opts.timeoutMs, what: 'SOCKS request' });
  return { command: request.command, target: request.target, label };
}

/** The answer to a CONNECT. */
export interface SocksConnectReply {
  /** SOCKS5 reply byte (0 = connected). */
  rep: number;
  bound: SocksBound;
  /** On failure: the peer's one-line reason if it sent one, else the reply's meaning. */
  reason: string;
}

/**
 * Send greeting (with `label` as an RFC 1929 user name when given) and CONNECT in one
 * write, then read the answers. On a failure reply the stream is destroyed after its
 * reason text is read. `peer` names the other side in error messages.
 */
export async function requestSocksConnect(
  stream: Duplex,
  target: Target,
  opts: { timeoutMs: number; peer: string; label?: string; signal?: AbortSignal },
): Promise<SocksConnectReply> {
  const method = opts.label ? SocksMethod.USERNAME_PASSWORD : SocksMethod.NO_AUTH;
  stream.write(Buffer.concat([
    encodeGreeting([method]),
    ...(opts.label ? [encodeUserPass(opts.label)] : []),
    encodeRequest(target),
  ]));
  const read = { timeoutMs: opts.timeoutMs, signal: opts.signal };
  const sel = await readMessage(stream, parseMethodSelection, { ...read, what: `${opts.peer} SOCKS method selection` });
  if (sel.method !== method) throw new BrokerError('BRK_INTERNAL', `${opts.peer} chose SOCKS auth method 0x${sel.method.toString(16)}`);
  if (opts.label) {
    const auth = await readMessage(stream, parseAuthStatus, { ...read, what: `${opts.peer} SOCKS auth status` });
    if (!auth.ok) throw new BrokerError('BRK_INTERNAL', `${opts.peer} refused the stream label`);
  }
  const reply = await readMessage(stream, parseReply, { ...read, what: `${opts.peer} SOCKS reply` });
  if (reply.rep === 0) return { rep: 0, bound: reply.bound, reason: 'succeeded' };
  const text = await readRemainder(stream);
  stream.destroy();
  return { rep: reply.rep, bound: reply.bound, reason: text || `${formatTarget(target)}: ${socksReplyMessage(reply.rep)}` };
}

/** Read what remains of a stream as text, up to `maxBytes`, within `timeoutMs` (the in-band failure reason). */
export function readRemainder(stream: Duplex, maxBytes = 512, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = () => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', finish);
      stream.off('close', finish);
      stream.off('error', finish);
      resolve(Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8').split(/\r?\n/)[0]!.trim());
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= maxBytes) finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    stream.on('data', onData);
    stream.once('end', finish);
    stream.once('close', finish);
    stream.once('error', finish);
  });
}

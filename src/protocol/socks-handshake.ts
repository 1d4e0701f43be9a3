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
  SocksMethod, type Parse, type SocksBound,
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
  /**
   * Answers the client is still owed (method selection, auth status), held back
   * because it pipelined its request: they must precede the reply. Send them with
   * `answer()`; empty for a client that waited for each answer.
   */
  owed: Buffer;
}

const EMPTY: Buffer = Buffer.alloc(0);

/** Before a request is accepted nothing is owed (for callers' error paths). */
export const NOTHING_OWED: Pick<SocksConnectRequest, 'owed'> = Object.freeze({ owed: EMPTY });

/** The bytes to write for `reply`: what the client is still owed, then the reply (and any text after it). */
export function answer(request: Pick<SocksConnectRequest, 'owed'>, ...reply: Buffer[]): Buffer {
  return request.owed.length === 0 && reply.length === 1 ? reply[0]! : Buffer.concat([request.owed, ...reply]);
}

/**
 * Read the greeting, choose a method, read the request. Resolves undefined when no
 * offered method is acceptable (`05 FF` has been sent and the stream ended). Rejects
 * with readMessage's errors (a SocksProtocolError carries the reply to send; any
 * answer still owed has been written by then).
 *
 * A client that pipelines (greeting, auth and request in one write, as our helper
 * and broker do) is answered once, with everything in the reply's write: one SSH
 * packet instead of three. A client that waits for each answer gets it at once.
 */
export async function acceptSocksConnect(
  stream: Duplex,
  opts: { timeoutMs: number; idleTimeoutMs?: number; acceptLabel?: boolean },
): Promise<SocksConnectRequest | undefined> {
  let owed: Buffer = EMPTY;
  // Answer now unless the client already sent more (then it is not waiting for this answer).
  const owe = (bytes: Buffer): void => {
    owed = owed.length === 0 ? bytes : Buffer.concat([owed, bytes]);
    if (stream.readableLength === 0) {
      stream.write(owed);
      owed = EMPTY;
    }
  };
  const greeting = await readMessage(stream, parseGreeting, { timeoutMs: opts.timeoutMs, idleTimeoutMs: opts.idleTimeoutMs, what: 'SOCKS greeting' });
  let label: string | undefined;
  if (opts.acceptLabel && greeting.methods.includes(SocksMethod.USERNAME_PASSWORD)) {
    owe(encodeMethodSelection(SocksMethod.USERNAME_PASSWORD));
    label = (await readOwing(stream, parseUserPass, opts.timeoutMs, 'SOCKS auth', owed)).user;
    owe(encodeAuthStatus(true));
  } else if (greeting.methods.includes(SocksMethod.NO_AUTH)) {
    owe(encodeMethodSelection(SocksMethod.NO_AUTH));
  } else {
    stream.end(Buffer.from([5, 0xff]));
    return undefined;
  }
  const request = await readOwing(stream, parseRequest, opts.timeoutMs, 'SOCKS request', owed);
  return { command: request.command, target: request.target, label, owed };
}

/** readMessage; on failure the answers still owed go out first, so whatever the caller replies follows them. */
async function readOwing<T>(stream: Duplex, parser: (buf: Buffer) => Parse<T>, timeoutMs: number, what: string, owed: Buffer) {
  try {
    return await readMessage(stream, parser, { timeoutMs, what });
  } catch (err) {
    if (owed.length > 0 && stream.writable) stream.write(owed);
    throw err;
  }
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
  // The answers come as one message from a server that saw the pipelined request (ours),
  // or one by one (stock servers): read them as one either way.
  const reply = await readMessage(stream, (buf) => parseAnswers(buf, method, opts.peer), {
    timeoutMs: opts.timeoutMs, signal: opts.signal, what: `${opts.peer} SOCKS reply`,
  });
  if (reply.rep === 0) return { rep: 0, bound: reply.bound, reason: 'succeeded' };
  const text = await readRemainder(stream);
  stream.destroy();
  return { rep: reply.rep, bound: reply.bound, reason: text || `${formatTarget(target)}: ${socksReplyMessage(reply.rep)}` };
}

/** Method selection, auth status (when a label was sent) and reply, as one message. */
function parseAnswers(buf: Buffer, method: number, peer: string): Parse<{ rep: number; bound: SocksBound }> {
  const sel = parseMethodSelection(buf);
  if (sel.state !== 'ok') return sel;
  if (sel.method !== method) return refused(`${peer} chose SOCKS auth method 0x${sel.method.toString(16)}`);
  let at = sel.consumed;
  if (method === SocksMethod.USERNAME_PASSWORD) {
    const auth = parseAuthStatus(buf.subarray(at));
    if (auth.state !== 'ok') return auth;
    if (!auth.ok) return refused(`${peer} refused the stream label`);
    at += auth.consumed;
  }
  const reply = parseReply(buf.subarray(at));
  if (reply.state !== 'ok') return reply;
  return { ...reply, consumed: at + reply.consumed };
}

function refused(message: string): Parse<never> {
  return { state: 'error', error: new BrokerError('BRK_INTERNAL', message) };
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

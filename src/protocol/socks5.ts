/**
 * SOCKS5 (RFC 1928) codec: pure functions, no I/O. We speak SOCKS5 in three
 * places (the helper's local front-end, broker -> agent inside SSH channels, and
 * helper -> broker pipelined inside a channel), so the same parsers serve the
 * server and the client side.
 *
 * Every parser takes a Buffer that may hold a partial message or more than one
 * message and returns a {@link Parse} result:
 *  - `need-more`: the buffer is a valid prefix; wait for more bytes.
 *  - `ok`: a complete message; `consumed` bytes belong to it, anything after that
 *    belongs to the next message / the relayed payload.
 *  - `error`: the input is malformed. `error` is a {@link SocksProtocolError}
 *    with a one-line message naming the offending byte; `reply` (also on
 *    `error.reply`) holds the bytes to send the peer before closing, if any.
 *
 * Errors are reported as early as possible: as soon as the offending byte has
 * arrived, the result is `error`, and it stays the same for every longer buffer.
 *
 * Reply codes chosen for malformed client requests (documented decision):
 *  | input                                   | reply               | error code        |
 *  |-----------------------------------------|---------------------|-------------------|
 *  | greeting: VER != 5                      | none (not SOCKS5)   | BRK_BAD_REQUEST   |
 *  | greeting: NMETHODS = 0                  | 05 FF (no method)   | BRK_BAD_REQUEST   |
 *  | request: VER != 5                       | 0x01 general fail.  | BRK_BAD_REQUEST   |
 *  | request: CMD not 1, 2 or 3              | 0x07 cmd not supp.  | BRK_UNSUPPORTED   |
 *  | request: ATYP not 1, 3 or 4             | 0x08 atyp not supp. | BRK_BAD_TARGET    |
 *  | request: domain length 0                | 0x01 general fail.  | BRK_BAD_TARGET    |
 *  | request: domain not a valid DNS name/IP | 0x01 general fail.  | BRK_BAD_TARGET    |
 *  | request: CONNECT to port 0              | 0x01 general fail.  | BRK_BAD_TARGET    |
 * 0x08 is used only when the address *type* is unknown (that is what RFC 1928
 * means by it); a known type with a malformed value is a general failure (0x01),
 * and 0x04 "host unreachable" would wrongly suggest a dial was attempted.
 * BIND (2) and UDP ASSOCIATE (3) parse as `ok` so the caller can reply 0x07;
 * for them port 0 is accepted (RFC 1928 section 7: a UDP ASSOCIATE client sends
 * all zeros when it does not know its address yet), so `target.port` is 0 only
 * when `command !== 1`.
 *
 * Malformed messages from a SOCKS *server* (method selection, reply) are
 * BRK_INTERNAL (the device or broker misbehaved; maps to 0x01 / HTTP 502) and
 * carry no reply: the client side just closes.
 */
import { isIP } from 'node:net';
import { BrokerError, type BrokerErrorCode } from '../errors';
import { makeTarget, type Target } from './target';

export const SOCKS_VERSION = 0x05;

/** Authentication methods (RFC 1928 section 3). */
export const SocksMethod = {
  NO_AUTH: 0x00,
  GSSAPI: 0x01,
  USERNAME_PASSWORD: 0x02,
  NO_ACCEPTABLE: 0xff,
} as const;

/** Request commands (RFC 1928 section 4). */
export const SocksCommand = {
  CONNECT: 0x01,
  BIND: 0x02,
  UDP_ASSOCIATE: 0x03,
} as const;

/** Address types (RFC 1928 section 5). */
export const SocksAddressType = {
  IPV4: 0x01,
  DOMAIN: 0x03,
  IPV6: 0x04,
} as const;

/** Result of parsing one message from the front of a buffer. */
export type Parse<T> =
  | { state: 'need-more' }
  | ({ state: 'ok'; consumed: number } & T)
  | { state: 'error'; error: BrokerError; reply?: Buffer /* bytes to send the peer before closing, if any */ };

/**
 * A malformed SOCKS message. `reply`, when present, is what to write to the
 * peer before closing (e.g. `05 FF` or a SOCKS reply with REP 0x07).
 */
export class SocksProtocolError extends BrokerError {
  readonly reply?: Buffer;

  constructor(code: BrokerErrorCode, message: string, options?: { cause?: unknown; reply?: Buffer }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    if (options?.reply !== undefined) this.reply = options.reply;
  }
}

/** A bound address as carried in a SOCKS reply. */
export interface SocksBound {
  host: string;
  port: number;
}

/** The bound address of a reply whose path does not carry one: 0.0.0.0:0. */
export const UNKNOWN_BOUND: SocksBound = Object.freeze({ host: '0.0.0.0', port: 0 });

const NEED_MORE: { state: 'need-more' } = Object.freeze({ state: 'need-more' }) as { state: 'need-more' };

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0')}`;
}

function fail(code: BrokerErrorCode, message: string, reply?: Buffer, cause?: unknown): { state: 'error'; error: BrokerError; reply?: Buffer } {
  const error = new SocksProtocolError(code, message, { cause, reply });
  return reply === undefined ? { state: 'error', error } : { state: 'error', error, reply };
}

/** Escape anything that is not printable ASCII so hostile bytes cannot forge log lines. */
function escapeBytes(bytes: Buffer, max = 80): string {
  let out = '';
  for (const b of bytes) {
    if (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
    if (out.length > max) return `${out.slice(0, max)}…`;
  }
  return out;
}

/** Why a first byte is not SOCKS5, in words a user can act on. */
function describeNonSocks5(first: number): string {
  const hint = 'use socks5h:// or --socks5-hostname';
  if (first === 0x04) return `not a SOCKS5 client (first byte 0x04 is SOCKS4); ${hint}`;
  if (first === 0x16) return `not a SOCKS5 client (first byte 0x16 looks like TLS); ${hint}`;
  // GET, POST, PUT, PATCH, HEAD, CONNECT, OPTIONS, DELETE, TRACE
  if ('GPHCODT'.includes(String.fromCharCode(first))) {
    return `not a SOCKS5 client (first byte ${hex(first)} looks like HTTP); ${hint}`;
  }
  return `not a SOCKS5 client (first byte ${hex(first)}, expected 0x05); ${hint}`;
}

// ---------------------------------------------------------------------------
// Method negotiation
// ---------------------------------------------------------------------------

/** Client greeting: `05 NMETHODS METHODS...` (server side). */
export function parseGreeting(buf: Buffer): Parse<{ methods: number[] }> {
  if (buf.length < 1) return NEED_MORE;
  const ver = buf[0]!;
  if (ver !== SOCKS_VERSION) return fail('BRK_BAD_REQUEST', describeNonSocks5(ver));
  if (buf.length < 2) return NEED_MORE;
  const n = buf[1]!;
  if (n === 0) {
    return fail('BRK_BAD_REQUEST', 'SOCKS greeting: NMETHODS is 0x00 (expected at least one method)', encodeMethodSelection(SocksMethod.NO_ACCEPTABLE));
  }
  if (buf.length < 2 + n) return NEED_MORE;
  return { state: 'ok', consumed: 2 + n, methods: Array.from(buf.subarray(2, 2 + n)) };
}

/** Client greeting; default offers only "no authentication". */
export function encodeGreeting(methods: number[] = [SocksMethod.NO_AUTH]): Buffer {
  if (methods.length < 1 || methods.length > 255) {
    throw new BrokerError('BRK_INTERNAL', `SOCKS greeting: ${methods.length} methods (expected 1-255)`);
  }
  for (const m of methods) checkByte(m, 'SOCKS greeting: method');
  return Buffer.from([SOCKS_VERSION, methods.length, ...methods]);
}

/** Server's method selection: `05 MM`. */
export function encodeMethodSelection(method: number): Buffer {
  checkByte(method, 'SOCKS method selection: method');
  return Buffer.from([SOCKS_VERSION, method]);
}

/**
 * Server's method selection (client side). `05 FF` is well-formed and parses as
 * `ok` with method 0xff; the caller decides what "no acceptable method" means.
 */
export function parseMethodSelection(buf: Buffer): Parse<{ method: number }> {
  if (buf.length < 1) return NEED_MORE;
  const ver = buf[0]!;
  if (ver !== SOCKS_VERSION) {
    return fail('BRK_INTERNAL', `SOCKS method selection: bad version ${hex(ver)} (expected 0x05)`);
  }
  if (buf.length < 2) return NEED_MORE;
  return { state: 'ok', consumed: 2, method: buf[1]! };
}

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

/** Client request: `05 CMD RSV ATYP DST.ADDR DST.PORT` (server side). RSV is not checked. */
export function parseRequest(buf: Buffer): Parse<{ command: number; target: Target }> {
  const what = 'SOCKS request';
  if (buf.length < 1) return NEED_MORE;
  const ver = buf[0]!;
  if (ver !== SOCKS_VERSION) {
    return fail('BRK_BAD_REQUEST', `${what}: bad version ${hex(ver)} (expected 0x05)`, encodeReply(0x01));
  }
  if (buf.length < 2) return NEED_MORE;
  const cmd = buf[1]!;
  if (cmd !== SocksCommand.CONNECT && cmd !== SocksCommand.BIND && cmd !== SocksCommand.UDP_ASSOCIATE) {
    return fail('BRK_UNSUPPORTED', `${what}: unknown command ${hex(cmd)} (expected 1 CONNECT, 2 BIND or 3 UDP ASSOCIATE)`, encodeReply(0x07));
  }
  // buf[2] is RSV: RFC 1928 says 0x00, but some clients send garbage; tolerate it.
  if (buf.length < 4) return NEED_MORE;
  const atyp = buf[3]!;
  let host: string;
  let kind: Target['kind'];
  let portAt: number;
  switch (atyp) {
    case SocksAddressType.IPV4: {
      if (buf.length < 4 + 4 + 2) return NEED_MORE;
      host = formatIPv4(buf.subarray(4, 8));
      kind = 'ipv4';
      portAt = 8;
      break;
    }
    case SocksAddressType.IPV6: {
      if (buf.length < 4 + 16 + 2) return NEED_MORE;
      host = formatIPv6(buf.subarray(4, 20));
      kind = 'ipv6';
      portAt = 20;
      break;
    }
    case SocksAddressType.DOMAIN: {
      if (buf.length < 5) return NEED_MORE;
      const len = buf[4]!;
      if (len === 0) {
        return fail('BRK_BAD_TARGET', `${what}: domain name length is 0x00 (expected 1-255)`, encodeReply(0x01));
      }
      if (buf.length < 5 + len) return NEED_MORE;
      const raw = buf.subarray(5, 5 + len);
      let t: Target | undefined;
      let cause: unknown;
      // Only printable ASCII can be a DNS name; reject the rest before decoding.
      if (raw.every((b) => b > 0x20 && b < 0x7f)) {
        try {
          t = makeTarget(raw.toString('latin1'), 1);
        } catch (err) {
          cause = err;
        }
      }
      if (!t) {
        const bad = raw.findIndex((b) => b <= 0x20 || b >= 0x7f);
        const detail = bad >= 0 ? `byte ${hex(raw[bad]!)} at offset ${bad}` : 'not a valid DNS name or IP address';
        return fail('BRK_BAD_TARGET', `${what}: bad domain name "${escapeBytes(raw)}" (${detail})`, encodeReply(0x01), cause);
      }
      host = t.host;
      kind = t.kind;
      portAt = 5 + len;
      if (buf.length < portAt + 2) return NEED_MORE;
      break;
    }
    default:
      return fail('BRK_BAD_TARGET', `${what}: unknown address type ${hex(atyp)} (expected 1, 3 or 4)`, encodeReply(0x08));
  }
  const port = buf.readUInt16BE(portAt);
  if (port === 0 && cmd === SocksCommand.CONNECT) {
    return fail('BRK_BAD_TARGET', `${what}: destination port is 0 (expected 1-65535)`, encodeReply(0x01));
  }
  return { state: 'ok', consumed: portAt + 2, command: cmd, target: { host, port, kind } };
}

/**
 * Client request: ATYP 3 for kind 'domain', 1 for 'ipv4', 4 for 'ipv6'.
 * Throws BRK_BAD_TARGET if the target cannot be carried (bad literal, zone index,
 * domain over 255 bytes, port out of range; port 0 only for non-CONNECT).
 */
export function encodeRequest(target: Target, command: number = SocksCommand.CONNECT): Buffer {
  checkByte(command, 'SOCKS request: command');
  const minPort = command === SocksCommand.CONNECT ? 1 : 0;
  const port = target.port;
  if (!Number.isInteger(port) || port < minPort || port > 65535) {
    throw new BrokerError('BRK_BAD_TARGET', `SOCKS request: bad port ${String(port)} (expected ${minPort}-65535)`);
  }
  const addr = encodeAddress(target.host, target.kind, 'SOCKS request');
  const out = Buffer.alloc(3 + addr.length + 2);
  out[0] = SOCKS_VERSION;
  out[1] = command;
  out[2] = 0x00;
  addr.copy(out, 3);
  out.writeUInt16BE(port, 3 + addr.length);
  return out;
}

// ---------------------------------------------------------------------------
// Reply
// ---------------------------------------------------------------------------

/**
 * Server reply `05 REP 00 ATYP BND.ADDR BND.PORT`; default bound 0.0.0.0:0.
 * An IPv4/IPv6 literal is sent as ATYP 1/4, anything else as a domain (ATYP 3,
 * at most 255 bytes).
 */
export function encodeReply(rep: number, bound: SocksBound = UNKNOWN_BOUND): Buffer {
  checkByte(rep, 'SOCKS reply: REP');
  if (bound === UNKNOWN_BOUND) {
    // What every helper-side reply carries: built once per code, copied per reply
    // (building it parsed the address each time: 2 % of a helper's connection).
    const known = (UNKNOWN_BOUND_REPLIES[rep] ??= encodeBound(rep, bound));
    return Buffer.from(known);
  }
  return encodeBound(rep, bound);
}

const UNKNOWN_BOUND_REPLIES: Buffer[] = [];

function encodeBound(rep: number, bound: SocksBound): Buffer {
  const port = bound.port;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new BrokerError('BRK_INTERNAL', `SOCKS reply: bad bound port ${String(port)} (expected 0-65535)`);
  }
  let host = bound.host;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const family = isIP(host);
  const kind: Target['kind'] = family === 4 ? 'ipv4' : family === 6 ? 'ipv6' : 'domain';
  const addr = encodeAddress(host, kind, 'SOCKS reply', true);
  const out = Buffer.alloc(3 + addr.length + 2);
  out[0] = SOCKS_VERSION;
  out[1] = rep;
  out[2] = 0x00;
  addr.copy(out, 3);
  out.writeUInt16BE(port, 3 + addr.length);
  return out;
}

/**
 * Server reply (client side). Any REP value parses as `ok`; the bound address is
 * informational, so a domain BND.ADDR is returned as-is (latin1), not validated.
 */
export function parseReply(buf: Buffer): Parse<{ rep: number; bound: SocksBound }> {
  const what = 'SOCKS reply';
  if (buf.length < 1) return NEED_MORE;
  const ver = buf[0]!;
  if (ver !== SOCKS_VERSION) return fail('BRK_INTERNAL', `${what}: bad version ${hex(ver)} (expected 0x05)`);
  if (buf.length < 4) return NEED_MORE;
  const rep = buf[1]!;
  const atyp = buf[3]!;
  let host: string;
  let portAt: number;
  switch (atyp) {
    case SocksAddressType.IPV4:
      if (buf.length < 10) return NEED_MORE;
      host = formatIPv4(buf.subarray(4, 8));
      portAt = 8;
      break;
    case SocksAddressType.IPV6:
      if (buf.length < 22) return NEED_MORE;
      host = formatIPv6(buf.subarray(4, 20));
      portAt = 20;
      break;
    case SocksAddressType.DOMAIN: {
      if (buf.length < 5) return NEED_MORE;
      const len = buf[4]!;
      if (buf.length < 5 + len + 2) return NEED_MORE;
      host = buf.subarray(5, 5 + len).toString('latin1');
      portAt = 5 + len;
      break;
    }
    default:
      return fail('BRK_INTERNAL', `${what}: unknown address type ${hex(atyp)} (expected 1, 3 or 4)`);
  }
  return { state: 'ok', consumed: portAt + 2, rep, bound: { host, port: buf.readUInt16BE(portAt) } };
}

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

function checkByte(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 255) {
    throw new BrokerError('BRK_INTERNAL', `${what} ${String(value)} is not a byte`);
  }
}

/** ATYP + address bytes. */
function encodeAddress(host: string, kind: Target['kind'], what: string, lenient = false): Buffer {
  const code = lenient ? 'BRK_INTERNAL' : 'BRK_BAD_TARGET';
  switch (kind) {
    case 'ipv4': {
      if (isIP(host) !== 4) throw new BrokerError(code, `${what}: "${host}" is not an IPv4 address`);
      return Buffer.from([SocksAddressType.IPV4, ...host.split('.').map(Number)]);
    }
    case 'ipv6': {
      const bytes = parseIPv6(host);
      if (!bytes) throw new BrokerError(code, `${what}: "${escapeBytes(Buffer.from(host))}" is not an IPv6 address SOCKS5 can carry`);
      return Buffer.concat([Buffer.from([SocksAddressType.IPV6]), bytes]);
    }
    case 'domain': {
      // Domains travel as bytes; a Target's domain is ASCII (makeTarget checked it).
      if (/[^\u0000-\u00ff]/.test(host)) throw new BrokerError(code, `${what}: domain name has non-latin1 characters`);
      const name = Buffer.from(host, 'latin1');
      const min = lenient ? 0 : 1;
      if (name.length < min || name.length > 255) {
        throw new BrokerError(code, `${what}: domain name is ${name.length} bytes (expected ${min}-255)`);
      }
      return Buffer.concat([Buffer.from([SocksAddressType.DOMAIN, name.length]), name]);
    }
    default:
      throw new BrokerError(code, `${what}: unknown address kind ${String(kind)}`);
  }
}

function formatIPv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/**
 * RFC 5952 text form of 16 address bytes: lowercase, no leading zeros, the
 * longest run (first on a tie) of two or more zero groups as `::`, and the
 * IPv4-mapped range ::ffff:0:0/96 in mixed notation (section 5), as Node prints it.
 */
export function formatIPv6(b: Buffer): string {
  if (b.length !== 16) throw new BrokerError('BRK_INTERNAL', `IPv6 address is ${b.length} bytes (expected 16)`);
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return `::ffff:${formatIPv4(b.subarray(12, 16))}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hexes = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hexes.join(':');
  return `${hexes.slice(0, bestStart).join(':')}::${hexes.slice(bestStart + bestLen).join(':')}`;
}

/** 16 bytes of an IPv6 literal (mixed notation allowed), or undefined (zone index, not IPv6). */
export function parseIPv6(text: string): Buffer | undefined {
  let host = text;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.includes('%') || isIP(host) !== 6) return undefined;
  const toGroups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const o = piece.split('.').map(Number);
        out.push((o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!);
      } else {
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const dbl = host.indexOf('::');
  let groups: number[];
  if (dbl >= 0) {
    const head = toGroups(host.slice(0, dbl));
    const tail = toGroups(host.slice(dbl + 2));
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    groups = toGroups(host);
  }
  if (groups.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

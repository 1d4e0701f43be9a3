/**
 * One error type for the whole project. Every failure a user can see carries a
 * stable `BRK_*` code; the tables below map that code onto the wire replies of
 * each front-end (SOCKS5 REP byte, SSH channel-open failure reason, HTTP status),
 * so the reply is chosen in exactly one place.
 */

/** Stable, documented error codes (see docs/errors.md). */
export type BrokerErrorCode =
  | 'BRK_POLICY_DENIED'
  | 'BRK_CONN_REFUSED'
  | 'BRK_HOST_UNREACHABLE'
  | 'BRK_NET_UNREACHABLE'
  | 'BRK_TIMEOUT'
  | 'BRK_AGENT_OFFLINE'
  | 'BRK_BAD_TARGET'
  | 'BRK_UNSUPPORTED'
  | 'BRK_BAD_REQUEST'
  | 'BRK_BAD_DESCRIPTOR'
  | 'BRK_BAD_CODE'
  | 'BRK_RATE_LIMITED'
  | 'BRK_SESSION_FULL'
  | 'BRK_SESSION_ENDED'
  | 'BRK_AUTH_FAILED'
  | 'BRK_HOST_KEY_MISMATCH'
  | 'BRK_BROKER_UNREACHABLE'
  | 'BRK_BAD_OPTION'
  | 'BRK_INTERNAL';

/** SOCKS5 reply codes (RFC 1928 section 6). */
export const SocksReply = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;
export type SocksReplyCode = (typeof SocksReply)[keyof typeof SocksReply];

/** SSH_MSG_CHANNEL_OPEN_FAILURE reason codes (RFC 4254 section 5.1). */
export const OpenFailure = {
  ADMINISTRATIVELY_PROHIBITED: 1,
  CONNECT_FAILED: 2,
  UNKNOWN_CHANNEL_TYPE: 3,
  RESOURCE_SHORTAGE: 4,
} as const;
export type OpenFailureReason = (typeof OpenFailure)[keyof typeof OpenFailure];

interface WireMapping {
  socks: SocksReplyCode;
  ssh: OpenFailureReason;
  http: number;
}

/**
 * The mapping table. TIMEOUT maps to SOCKS 0x06 "TTL expired": RFC 1928 has no
 * timeout code and 0x06 is what curl and browsers report as a timeout-like error.
 */
const WIRE: Record<BrokerErrorCode, WireMapping> = {
  BRK_POLICY_DENIED: { socks: 0x02, ssh: 1, http: 403 },
  BRK_CONN_REFUSED: { socks: 0x05, ssh: 2, http: 502 },
  BRK_HOST_UNREACHABLE: { socks: 0x04, ssh: 2, http: 502 },
  BRK_NET_UNREACHABLE: { socks: 0x03, ssh: 2, http: 502 },
  BRK_TIMEOUT: { socks: 0x06, ssh: 2, http: 504 },
  BRK_AGENT_OFFLINE: { socks: 0x03, ssh: 2, http: 502 },
  BRK_BAD_TARGET: { socks: 0x08, ssh: 2, http: 400 },
  BRK_UNSUPPORTED: { socks: 0x07, ssh: 3, http: 405 },
  BRK_BAD_REQUEST: { socks: 0x01, ssh: 2, http: 400 },
  BRK_BAD_DESCRIPTOR: { socks: 0x01, ssh: 1, http: 400 },
  BRK_BAD_CODE: { socks: 0x02, ssh: 1, http: 403 },
  BRK_RATE_LIMITED: { socks: 0x02, ssh: 4, http: 429 },
  BRK_SESSION_FULL: { socks: 0x02, ssh: 4, http: 503 },
  BRK_SESSION_ENDED: { socks: 0x03, ssh: 2, http: 502 },
  BRK_AUTH_FAILED: { socks: 0x02, ssh: 1, http: 403 },
  BRK_HOST_KEY_MISMATCH: { socks: 0x01, ssh: 1, http: 502 },
  BRK_BROKER_UNREACHABLE: { socks: 0x03, ssh: 2, http: 502 },
  BRK_BAD_OPTION: { socks: 0x01, ssh: 2, http: 400 },
  BRK_INTERNAL: { socks: 0x01, ssh: 2, http: 502 },
};

/** All known codes, for validating codes that arrive over the wire. */
export const BROKER_ERROR_CODES = Object.keys(WIRE) as BrokerErrorCode[];

export function isBrokerErrorCode(value: unknown): value is BrokerErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(WIRE, value);
}

/** Base error: a stable code, a one-line message a user can act on, an optional cause. */
export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  readonly code: BrokerErrorCode;

  constructor(code: BrokerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  /** SOCKS5 REP byte for this failure. */
  get socksReply(): SocksReplyCode {
    return WIRE[this.code].socks;
  }

  /** SSH channel-open failure reason for this failure. */
  get openFailure(): OpenFailureReason {
    return WIRE[this.code].ssh;
  }

  /** HTTP proxy status for this failure. */
  get httpStatus(): number {
    return WIRE[this.code].http;
  }
}

export function toSocksReply(code: BrokerErrorCode): SocksReplyCode {
  return WIRE[code].socks;
}
export function toOpenFailure(code: BrokerErrorCode): OpenFailureReason {
  return WIRE[code].ssh;
}
export function toHttpStatus(code: BrokerErrorCode): number {
  return WIRE[code].http;
}

/** Human text for a SOCKS5 reply byte, as the device saw it. */
export function socksReplyMessage(rep: number): string {
  switch (rep) {
    case 0x00: return 'succeeded';
    case 0x01: return 'general failure';
    case 0x02: return 'connection not allowed by ruleset';
    case 0x03: return 'network unreachable';
    case 0x04: return 'host unreachable';
    case 0x05: return 'connection refused';
    case 0x06: return 'TTL expired (timed out)';
    case 0x07: return 'command not supported';
    case 0x08: return 'address type not supported';
    default: return `unknown reply 0x${rep.toString(16).padStart(2, '0')}`;
  }
}

/** The error code a SOCKS5 reply byte stands for (inverse of the table, best match). */
export function fromSocksReply(rep: number): BrokerErrorCode {
  switch (rep) {
    case 0x02: return 'BRK_POLICY_DENIED';
    case 0x03: return 'BRK_NET_UNREACHABLE';
    case 0x04: return 'BRK_HOST_UNREACHABLE';
    case 0x05: return 'BRK_CONN_REFUSED';
    case 0x06: return 'BRK_TIMEOUT';
    case 0x07: return 'BRK_UNSUPPORTED';
    case 0x08: return 'BRK_BAD_TARGET';
    default: return 'BRK_INTERNAL';
  }
}

/**
 * Convert a Node dial/DNS error into a BrokerError. Called at the dial site
 * (the agent), so the code names what the device itself saw.
 */
export function fromDialError(err: unknown, target: string): BrokerError {
  if (err instanceof BrokerError) return err;
  const errno = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  switch (errno) {
    case 'ECONNREFUSED':
      return new BrokerError('BRK_CONN_REFUSED', `${target}: connection refused by the destination`, { cause: err });
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
      return new BrokerError('BRK_HOST_UNREACHABLE', `${target}: host unreachable from the device`, { cause: err });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
    case 'EAI_NODATA':
    case 'EAI_FAIL':
      return new BrokerError('BRK_HOST_UNREACHABLE', `${target}: name does not resolve on the device (${errno})`, { cause: err });
    case 'ENETUNREACH':
    case 'ENETDOWN':
    case 'EADDRNOTAVAIL':
    case 'EAFNOSUPPORT':
      return new BrokerError('BRK_NET_UNREACHABLE', `${target}: network unreachable from the device (${errno})`, { cause: err });
    case 'ETIMEDOUT':
    case 'ABORT_ERR':
      return new BrokerError('BRK_TIMEOUT', `${target}: connection timed out`, { cause: err });
    default: {
      const msg = err instanceof Error ? err.message : String(err);
      return new BrokerError('BRK_INTERNAL', `${target}: ${msg}`, { cause: err });
    }
  }
}

/** Errors that only mean "the other side went away": kept out of warning logs. */
export function isExpectedClose(err: unknown): boolean {
  const e = err as { code?: string; message?: string; name?: string } | undefined;
  if (!e) return true;
  if (e.code && ['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED', 'ABORT_ERR'].includes(e.code)) return true;
  if (e.name === 'AbortError') return true;
  return /Channel (?:is )?closed|No response from server|Not connected/i.test(e.message ?? '');
}

/** Best-effort one-line message for anything thrown. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}

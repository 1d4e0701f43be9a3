/**
 * Named device-leg opens: the broker's `forwarded-tcpip` open to a native agent
 * names the target and the helper in its originator fields, the way a helper's
 * `direct-tcpip` open names its target on the other leg. The agent dials, then
 * confirms the channel, or refuses it with `BRK_CODE: reason` as the open failure's
 * description. A stream then costs the device leg one round trip and two SSH
 * packets (open, confirmation), with no SOCKS bytes on either side and no channels
 * opened in advance.
 *
 * RFC 4254 gives the originator fields to the opener for information ("address of
 * the originator"), and OpenSSH only logs them. Only agents that announce that they
 * read them get such opens: the token below, as a comment in their SSH
 * identification string (`SSH-2.0-software comments`), which every SSH
 * implementation sends and ignores. Agents without it (stock `ssh -R`, older native
 * agents) still get SOCKS5 on pre-opened channels, and an agent that announces it
 * still serves SOCKS5 on opens whose originator is not ours (older brokers).
 *
 * Originator address and port:
 *   `remote-assist:connect:<helper id>:<host>`, port = target port: dial host:port;
 *   `remote-assist:probe`, port 0: refuse at once. The broker times it: the device
 *     leg's round trip without a dial, which the window cap needs (`stream-window`).
 */
import { BrokerError } from '../errors';
import { makeTarget, printable, type Target } from './target';

/** Ident comment of agents that read named opens. */
export const NAMED_OPEN_FEATURE = 'remote-assist-named-open';

const PREFIX = 'remote-assist:';
const CONNECT = `${PREFIX}connect:`;
const PROBE = `${PREFIX}probe`;
/** Helper ids are positive integers; the broker counts them from 1. */
const HELPER_ID_RE = /^[1-9][0-9]{0,9}$/;

/** What an agent is asked to do by one `forwarded-tcpip` open. */
export type NamedOpen =
  /** Not a named open: SOCKS5 follows on the channel (stock convention, older brokers). */
  | { kind: 'socks' }
  /** Answer at once with a refusal: the broker times the device leg. */
  | { kind: 'probe' }
  | { kind: 'connect'; helper: number; target: Target }
  /** A named open that does not parse: refuse it with this error. */
  | { kind: 'invalid'; error: BrokerError };

/** Does this SSH identification comment (ssh2: `info.header.comments`) announce named opens? */
export function announcesNamedOpens(comments: unknown): boolean {
  return typeof comments === 'string' && comments.split(' ').includes(NAMED_OPEN_FEATURE);
}

/** The originator fields of a named open to `target` for helper `helper`. */
export function encodeNamedOpen(target: Target, helper: number): { originAddr: string; originPort: number } {
  return { originAddr: `${CONNECT}${helper}:${target.host}`, originPort: target.port };
}

/** The originator fields of a probe. */
export function encodeProbe(): { originAddr: string; originPort: number } {
  return { originAddr: PROBE, originPort: 0 };
}

/** Read the originator fields of a `forwarded-tcpip` open (hostile input: the broker is not trusted). */
export function parseNamedOpen(originAddr: unknown, originPort: unknown): NamedOpen {
  if (typeof originAddr !== 'string' || !originAddr.startsWith(PREFIX)) return { kind: 'socks' };
  if (originAddr === PROBE) return { kind: 'probe' };
  if (!originAddr.startsWith(CONNECT)) {
    return invalid(`unknown named open "${printable(originAddr)}"`);
  }
  const rest = originAddr.slice(CONNECT.length);
  const colon = rest.indexOf(':');
  const id = colon < 0 ? '' : rest.slice(0, colon);
  if (!HELPER_ID_RE.test(id) || Number(id) > 0xffffffff) return invalid(`named open without a helper id: "${printable(originAddr)}"`);
  try {
    return { kind: 'connect', helper: Number(id), target: makeTarget(rest.slice(colon + 1), Number(originPort)) };
  } catch (err) {
    return { kind: 'invalid', error: err instanceof BrokerError ? err : new BrokerError('BRK_BAD_TARGET', String(err)) };
  }
}

function invalid(message: string): NamedOpen {
  return { kind: 'invalid', error: new BrokerError('BRK_BAD_REQUEST', message) };
}

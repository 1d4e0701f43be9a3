/**
 * Destination addresses (`host:port`) as they travel through the system. Pure
 * parsing and formatting, no I/O: IPv6 literals are bracketed, domains are
 * length-checked the way SOCKS5 can carry them (at most 255 bytes).
 */
import { isIP } from 'node:net';
import { BrokerError } from '../errors';

export type TargetKind = 'ipv4' | 'ipv6' | 'domain';

/** A destination to dial. `host` is an IP literal (no brackets) or a domain name. */
export interface Target {
  readonly host: string;
  readonly port: number;
  readonly kind: TargetKind;
}

const DOMAIN_RE = /^(?=.{1,253}\.?$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$/;

/** Classify a host string; throws BRK_BAD_TARGET for anything that is neither an IP nor a valid DNS name. */
export function makeTarget(host: string, port: number): Target {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new BrokerError('BRK_BAD_TARGET', `bad port ${String(port)}: use 1-65535`);
  }
  let h = host;
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  const family = isIP(h);
  if (family === 4) return { host: h, port, kind: 'ipv4' };
  if (family === 6) return { host: h.toLowerCase(), port, kind: 'ipv6' };
  if (Buffer.byteLength(h) > 255 || !DOMAIN_RE.test(h)) {
    throw new BrokerError('BRK_BAD_TARGET', `bad host name "${printable(h)}": not an IP address or a valid DNS name`);
  }
  return { host: h.toLowerCase().replace(/\.$/, ''), port, kind: 'domain' };
}

/** Parse `host:port`, `[v6]:port`. Throws BRK_BAD_TARGET with a message saying what is wrong. */
export function parseTarget(text: string): Target {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:]+):(\d{1,5})$/.exec(text);
  if (!m) throw new BrokerError('BRK_BAD_TARGET', `bad destination "${printable(text)}": expected HOST:PORT or [IPv6]:PORT`);
  return makeTarget(m[1]!, Number(m[2]));
}

/** Format for logs and messages: `host:port`, `[v6]:port`. */
export function formatTarget(t: { host: string; port: number }): string {
  return isIP(t.host) === 6 ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** Escape control characters so hostile input cannot forge log lines or terminal sequences. */
export function printable(text: string, max = 80): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

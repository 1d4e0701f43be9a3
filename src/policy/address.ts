/**
 * Address normalisation and classification for the policy engine.
 *
 * Why this exists: a destination can name the same address in many spellings that
 * a resolver (glibc `getaddrinfo`, i.e. Node's `dns.lookup`) happily accepts —
 * `127.1`, `0x7f.1`, `0177.0.0.1`, `2130706433`, `::ffff:127.0.0.1`,
 * `::ffff:7f00:1`, `fe80::1%eth0`. Rules are only sound if every one of those is
 * reduced to ONE canonical string before it is compared. Everything here is pure
 * (no DNS, no I/O) and built on ipaddr.js.
 *
 * Canonical form: IPv4 as a dotted quad; IPv6 compressed, lowercase, no zone id.
 * IPv4-mapped (`::ffff:0:0/96`) and IPv4-compatible (`::/96`, except `::` and
 * `::1`) IPv6 addresses become the IPv4 address they carry, because that is what
 * a dual-stack socket actually reaches.
 */
import ipaddr from 'ipaddr.js';
import { BrokerError } from '../errors';
import { printable } from '../protocol/target';

/** A parsed address object from ipaddr.js. */
export type IpAddr = ipaddr.IPv4 | ipaddr.IPv6;

/** Address family of a canonical IP. */
export type IpFamily = 4 | 6;

/** What kind of address an IP is; the first seven are "sensitive" (see isSensitive). */
export type IpClass =
  | 'loopback'
  | 'link-local'
  | 'metadata'
  | 'multicast'
  | 'unspecified'
  | 'broadcast'
  | 'private'
  | 'reserved'
  | 'public';

/** A sensitive range an address falls in, used to judge whether a rule names it "explicitly". */
export interface SensitiveRange {
  readonly class: IpClass;
  readonly family: IpFamily;
  /** Canonical network address of the range. */
  readonly network: string;
  readonly prefix: number;
}

const ZONE_RE = /^[0-9A-Za-z_.-]{1,64}$/;

/**
 * Parse an IP literal in any notation a resolver accepts, WITHOUT unmapping
 * IPv4-in-IPv6 forms. Accepts optional brackets around IPv6 and strips a zone id
 * (`%eth0`, `%25eth0`). Returns null for anything that is not an IP literal.
 * Exposed for CIDR parsing, which needs to know the family that was written.
 */
export function parseIpRaw(text: string): IpAddr | null {
  if (typeof text !== 'string' || text.length === 0 || text.length > 100) return null;
  let t = text;
  let bracketed = false;
  if (t.startsWith('[') && t.endsWith(']')) {
    t = t.slice(1, -1);
    bracketed = true;
  }
  const pct = t.indexOf('%');
  if (pct !== -1) {
    const zone = t.slice(pct + 1);
    t = t.slice(0, pct);
    if (!ZONE_RE.test(zone) || !t.includes(':')) return null; // zones exist only on IPv6
  }
  if (!/^[0-9A-Fa-fXx.:]+$/.test(t)) return null;
  if (bracketed && !t.includes(':')) return null; // `[127.0.0.1]` is not something resolvers accept
  try {
    if (!ipaddr.isValid(t)) return null;
    return ipaddr.parse(t);
  } catch {
    return null;
  }
}

/**
 * Turn IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6
 * addresses into the IPv4 address they carry; anything else is returned as is.
 * `::` and `::1` stay IPv6 (unspecified and loopback).
 */
export function unmapIp(addr: IpAddr): IpAddr {
  if (addr.kind() === 'ipv4') return addr;
  const v6 = addr as ipaddr.IPv6;
  const p = v6.parts;
  const headZero = p[0] === 0 && p[1] === 0 && p[2] === 0 && p[3] === 0 && p[4] === 0;
  if (headZero && (p[5] === 0xffff || (p[5] === 0 && (p[6] !== 0 || p[7]! > 1)))) {
    return new ipaddr.IPv4([p[6]! >> 8, p[6]! & 0xff, p[7]! >> 8, p[7]! & 0xff]);
  }
  return v6;
}

/** Parse and fully normalise an IP literal to an ipaddr.js object (zone dropped, IPv4-in-IPv6 unmapped), or null. */
export function parseIp(text: string): IpAddr | null {
  const raw = parseIpRaw(text);
  if (!raw) return null;
  const addr = unmapIp(raw);
  if (addr.kind() === 'ipv6') return new ipaddr.IPv6((addr as ipaddr.IPv6).parts.slice()); // drops zoneId
  return addr;
}

/** Canonical string of a parsed address (dotted quad or compressed lowercase IPv6). */
export function formatIp(addr: IpAddr): string {
  return addr.kind() === 'ipv4' ? addr.toString() : (addr as ipaddr.IPv6).toRFC5952String();
}

/**
 * Canonical IP string if `text` is an IP literal in any notation a resolver might
 * accept (see the file comment), else null. This is the ONLY way policy code
 * should turn a string into an address to compare.
 */
export function normalizeIp(text: string): string | null {
  const addr = parseIp(text);
  return addr ? formatIp(addr) : null;
}

/** Family (4 or 6) of a parsed address. */
export function familyOf(addr: IpAddr): IpFamily {
  return addr.kind() === 'ipv4' ? 4 : 6;
}

interface RangeEntry {
  readonly cls: IpClass;
  readonly net: IpAddr;
  readonly prefix: number;
  readonly sensitive: boolean;
}

function entry(cls: IpClass, cidr: string, sensitive: boolean): RangeEntry {
  const [net, prefix] = ipaddr.parseCIDR(cidr);
  return { cls, net, prefix, sensitive };
}

/** Ordered: the first match wins, so the narrower metadata ranges come before their enclosing ranges. */
const RANGES: readonly RangeEntry[] = [
  entry('metadata', '169.254.169.254/32', true), // AWS, GCP, Azure, OpenStack, ...
  entry('metadata', '100.100.100.200/32', true), // Alibaba Cloud
  entry('metadata', 'fd00:ec2::254/128', true), // AWS IMDS over IPv6
  entry('unspecified', '0.0.0.0/8', true),
  entry('unspecified', '::/128', true),
  entry('loopback', '127.0.0.0/8', true),
  entry('loopback', '::1/128', true),
  entry('link-local', '169.254.0.0/16', true),
  entry('link-local', 'fe80::/10', true),
  entry('multicast', '224.0.0.0/4', true),
  entry('multicast', 'ff00::/8', true),
  entry('broadcast', '255.255.255.255/32', true),
  entry('private', '10.0.0.0/8', false),
  entry('private', '172.16.0.0/12', false),
  entry('private', '192.168.0.0/16', false),
  entry('private', 'fc00::/7', false),
  entry('reserved', '100.64.0.0/10', false), // carrier-grade NAT
  entry('reserved', '192.0.0.0/24', false),
  entry('reserved', '192.0.2.0/24', false),
  entry('reserved', '198.18.0.0/15', false), // benchmarking (used by this project's netns tests)
  entry('reserved', '198.51.100.0/24', false),
  entry('reserved', '203.0.113.0/24', false),
  entry('reserved', '240.0.0.0/4', false),
  entry('reserved', '2001:db8::/32', false),
  entry('reserved', '100::/64', false),
];

/** IPv6 prefixes that embed an IPv4 address in their last 32 bits and are translated to IPv4 by a gateway. */
const TRANSLATED_V6: readonly [ipaddr.IPv6, number][] = [
  ipaddr.IPv6.parseCIDR('64:ff9b::/96'), // NAT64 (RFC 6052)
  ipaddr.IPv6.parseCIDR('::ffff:0:0:0/96'), // SIIT IPv4-translated (RFC 6145)
];

function lookup(addr: IpAddr): RangeEntry | null {
  for (const r of RANGES) {
    if (r.net.kind() === addr.kind() && addr.match(r.net, r.prefix)) return r;
  }
  return null;
}

function requireIp(ip: string): IpAddr {
  const addr = parseIp(ip);
  if (!addr) throw new BrokerError('BRK_BAD_TARGET', `"${printable(String(ip))}" is not an IP address`);
  return addr;
}

/**
 * The sensitive range `ip` falls in, or null if it is not sensitive. Sensitive
 * ranges: unspecified (0.0.0.0/8, ::), loopback (127/8, ::1), link-local
 * (169.254/16, fe80::/10), cloud metadata (169.254.169.254, 100.100.100.200,
 * fd00:ec2::254), multicast (224/4, ff00::/8) and broadcast (255.255.255.255).
 * NAT64 / SIIT IPv6 addresses that embed a sensitive IPv4 address are sensitive
 * too (the range returned is then the IPv6 image of the IPv4 range).
 * A non-IP input yields a synthetic "unspecified ::/0" range so callers fail closed.
 */
export function sensitiveRange(ip: string): SensitiveRange | null {
  const addr = parseIp(ip);
  if (!addr) return { class: 'unspecified', family: 6, network: '::', prefix: 0 };
  const hit = lookup(addr);
  if (hit) {
    return hit.sensitive ? { class: hit.cls, family: familyOf(hit.net), network: formatIp(hit.net), prefix: hit.prefix } : null;
  }
  if (addr.kind() === 'ipv6') {
    const v6 = addr as ipaddr.IPv6;
    for (const [net, prefix] of TRANSLATED_V6) {
      if (!v6.match(net, prefix)) continue;
      const p = v6.parts;
      const inner = new ipaddr.IPv4([p[6]! >> 8, p[6]! & 0xff, p[7]! >> 8, p[7]! & 0xff]);
      const innerHit = lookup(inner);
      if (!innerHit?.sensitive) return null;
      const o = innerHit.net.toByteArray();
      const parts = net.parts.slice(0, 6).concat([(o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!]);
      return { class: innerHit.cls, family: 6, network: formatIp(new ipaddr.IPv6(parts)), prefix: 96 + innerHit.prefix };
    }
  }
  return null;
}

/**
 * Classify an IP (any notation normalizeIp accepts). Throws
 * BrokerError('BRK_BAD_TARGET') for a non-IP: there is no honest class for garbage.
 */
export function classifyIp(ip: string): IpClass {
  const addr = requireIp(ip);
  const s = sensitiveRange(ip);
  if (s) return s.class;
  return lookup(addr)?.cls ?? 'public';
}

/**
 * True if `ip` is loopback, link-local, cloud metadata, multicast, unspecified or
 * broadcast: addresses a helper must never reach unless the device names them
 * explicitly. Fails closed: a non-IP input is treated as sensitive.
 */
export function isSensitive(ip: string): boolean {
  return sensitiveRange(ip) !== null;
}

/**
 * Does the CIDR `network/prefix` (family `family`) contain `ip`? An IPv4 `ip`
 * is also contained by an IPv6 CIDR that contains its IPv4-mapped form
 * (`::ffff:a.b.c.d`), so `::/0` covers everything, while `fc00::/7` covers no
 * IPv4 address. A non-IP `ip` is never contained.
 */
export function cidrContains(family: IpFamily, network: string, prefix: number, ip: string): boolean {
  const addr = parseIp(ip);
  const net = parseIpRaw(network);
  if (!addr || !net) return false;
  if (family === 4) return addr.kind() === 'ipv4' && net.kind() === 'ipv4' && addr.match(net, prefix);
  if (net.kind() !== 'ipv6') return false;
  const probe = addr.kind() === 'ipv4' ? (addr as ipaddr.IPv4).toIPv4MappedAddress() : addr;
  return probe.match(net, prefix);
}

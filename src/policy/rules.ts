/**
 * One allow/deny rule: `CIDR | IP | HOST | *.DOMAIN | *` with an optional
 * `:PORTS` list (`:22`, `:80,443`, `:8000-8100`, `:80,8000-8100`). IPv6 must be
 * bracketed when a port list follows (`[fd00::1]:22`, `[fd00::/8]:443`); bare
 * IPv6 without ports is fine (`fd00::/8`, `fd00::1`).
 *
 * Decisions:
 * - IP literals are normalised with normalizeIp, so `0x7f.1:80` IS `127.0.0.1:80`;
 *   a single IP becomes a /32 or /128 CIDR. Host bits of a CIDR are cleared
 *   (`10.20.1.5/16` → `10.20.0.0/16`). IPv4-mapped IPv6 CIDRs of /96 or longer
 *   become the IPv4 CIDR they stand for.
 * - `*.example.com` matches subdomains at any depth (`a.example.com`,
 *   `a.b.example.com`) but NOT the apex `example.com`: write both rules if both are meant.
 * - Names are lowercase ASCII (no IDN), without trailing dot. A name whose last
 *   label is numeric (`10.0.0.256`) is refused: resolvers would read it as an IP.
 * - `Rule.text` is the canonical form (formatRule), so messages and descriptors
 *   show one spelling whatever the user typed.
 * - Port lists are sorted and overlapping items merged; `null` means any port.
 */
import { BrokerError } from '../errors';
import { printable } from '../protocol/target';
import { familyOf, formatIp, parseIp, parseIpRaw, unmapIp, type IpAddr, type IpFamily } from './address';
import ipaddr from 'ipaddr.js';

/** Inclusive port range; a single port has from === to. */
export interface PortRange {
  from: number;
  to: number;
}

/** The host part of a rule. */
export type RuleHost =
  | { kind: 'cidr'; family: 4 | 6; network: string; prefix: number } // single IPs are /32 or /128
  | { kind: 'host'; name: string } // exact DNS name, lowercase, no trailing dot
  | { kind: 'suffix'; suffix: string } // '*.example.com': subdomains only, never the apex
  | { kind: 'any' };

/** A parsed rule. `ports: null` = any port. */
export interface Rule {
  readonly text: string;
  readonly host: RuleHost;
  readonly ports: readonly PortRange[] | null;
}

/** Longest rule text accepted. */
export const MAX_RULE_CHARS = 300;
/** Most comma-separated items in one port list. */
export const MAX_PORT_ITEMS = 64;

const EX_GENERIC = '10.20.0.0/16, printer.lan:80,443 or [fd00::1]:22';
const LABEL_RE = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

class RuleProblem extends Error {
  constructor(message: string, readonly example: string = EX_GENERIC) {
    super(message);
  }
}

/**
 * Parse one rule. Throws BrokerError('BRK_BAD_OPTION') with a one-line message
 * that quotes the rule, says what is wrong and gives a valid example.
 */
export function parseRule(text: string): Rule {
  try {
    const { host, ports } = parseParts(text);
    const draft = { text: '', host, ports };
    return Object.freeze({ text: formatRule(draft), host: Object.freeze(host), ports: ports ? Object.freeze(ports.map((p) => Object.freeze(p))) : null });
  } catch (err) {
    if (!(err instanceof RuleProblem)) throw err;
    const shown = typeof text === 'string' ? printable(text, 60) : String(typeof text);
    throw new BrokerError('BRK_BAD_OPTION', `bad rule "${shown}": ${err.message}; a valid example: ${err.example}`);
  }
}

function parseParts(text: string): { host: RuleHost; ports: PortRange[] | null } {
  if (typeof text !== 'string') throw new RuleProblem('a rule must be a string');
  if (text.length === 0) throw new RuleProblem('empty rule');
  if (text.length > MAX_RULE_CHARS) throw new RuleProblem(`longer than ${MAX_RULE_CHARS} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(text)) throw new RuleProblem('contains control characters');
  if (/\s/.test(text)) throw new RuleProblem('contains whitespace (one rule per option, no spaces)');

  let hostText: string;
  let portText: string | null = null;
  let bracketed = false;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) throw new RuleProblem('missing "]" after a bracketed IPv6 address', '[fd00::1]:22');
    hostText = text.slice(1, close);
    bracketed = true;
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw new RuleProblem('expected ":PORTS" after "]"', '[fd00::1]:22');
      portText = rest.slice(1);
    }
  } else {
    const colons = text.split(':').length - 1;
    if (colons >= 2) {
      hostText = text; // bare IPv6 (or IPv6 CIDR) without ports
      if (!parseIpRaw(text.split('/')[0]!)) {
        throw new RuleProblem('not a valid IPv6 address; put IPv6 in brackets when a port list follows', '[fd00::1]:22');
      }
    } else if (colons === 1) {
      const i = text.indexOf(':');
      hostText = text.slice(0, i);
      portText = text.slice(i + 1);
    } else {
      hostText = text;
    }
  }
  if (hostText === '') throw new RuleProblem('missing host (use * for any host)', '*:22');
  const host = parseHost(hostText, bracketed);
  const ports = portText === null ? null : parsePorts(portText);
  return { host, ports };
}

function parseHost(h: string, bracketed: boolean): RuleHost {
  if (bracketed) {
    const addrPart = h.split('/')[0]!;
    if (!addrPart.includes(':')) throw new RuleProblem('brackets are only for IPv6 addresses', '10.0.0.5:22');
    if (!parseIpRaw(addrPart)) throw new RuleProblem(`"${printable(addrPart, 50)}" is not a valid IPv6 address`, '[fd00::1]:22');
    return parseCidrOrIp(h);
  }
  if (h === '*') return { kind: 'any' };
  if (h.includes('/')) return parseCidrOrIp(h);
  if (parseIp(h)) return parseCidrOrIp(h);
  if (h.startsWith('*.')) {
    const suffix = parseName(h.slice(2));
    return { kind: 'suffix', suffix };
  }
  if (h.includes('*')) throw new RuleProblem('"*" is only allowed alone or as a leading "*." label', '*.corp.example');
  return { kind: 'host', name: parseName(h) };
}

function parseCidrOrIp(h: string): RuleHost {
  const slash = h.indexOf('/');
  const addrText = slash === -1 ? h : h.slice(0, slash);
  const raw = parseIpRaw(addrText);
  if (!raw) throw new RuleProblem(`"${printable(addrText, 50)}" is not a valid IP address`, '10.20.0.0/16');
  const rawFamily = familyOf(raw);
  const max = rawFamily === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = h.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      throw new RuleProblem(`prefix must be 0-${max}`, rawFamily === 4 ? '10.20.0.0/16' : 'fd00::/8');
    }
    prefix = Number(p);
  }
  let addr: IpAddr = raw;
  if (rawFamily === 6) {
    const unmapped = unmapIp(raw);
    if (unmapped.kind() === 'ipv4' && prefix >= 96) {
      addr = unmapped;
      prefix -= 96;
    } else {
      addr = new ipaddr.IPv6((raw as ipaddr.IPv6).parts.slice()); // drop any zone id
    }
  }
  const family: IpFamily = familyOf(addr);
  const network = maskNetwork(addr, prefix);
  return { kind: 'cidr', family, network, prefix };
}

/** Clear host bits: canonical network address of addr/prefix. */
function maskNetwork(addr: IpAddr, prefix: number): string {
  const bytes = addr.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return formatIp(ipaddr.fromByteArray(bytes));
}

function parseName(n: string): string {
  let name = n.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0) throw new RuleProblem('empty host name', 'printer.lan:80,443');
  if (name.length > 253) throw new RuleProblem('host name longer than 253 characters', 'printer.lan:80,443');
  const labels = name.split('.');
  for (const label of labels) {
    if (!LABEL_RE.test(label)) {
      throw new RuleProblem(
        `"${printable(label, 50)}" is not a valid host name label (letters, digits, "-", "_", 1-63 chars)`,
        'printer.lan:80,443',
      );
    }
  }
  const last = labels[labels.length - 1]!;
  if (/^(?:\d+|0x[0-9a-f]*)$/.test(last)) {
    throw new RuleProblem(`"${printable(n, 50)}" is not a valid IP address`, '10.20.0.5');
  }
  return name;
}

function parsePorts(p: string): PortRange[] {
  if (p === '') throw new RuleProblem('empty port list after ":"', 'printer.lan:80,443');
  const items = p.split(',');
  if (items.length > MAX_PORT_ITEMS) throw new RuleProblem(`more than ${MAX_PORT_ITEMS} port items`, '10.0.0.5:8000-8100');
  const ranges: PortRange[] = [];
  for (const item of items) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item);
    if (!m) throw new RuleProblem(`bad port "${printable(item, 20)}": use PORT or FROM-TO`, '10.0.0.5:80,8000-8100');
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    for (const v of [from, to]) {
      if (v < 1 || v > 65535) throw new RuleProblem(`port ${v} out of range: use 1-65535`, '10.0.0.5:22');
    }
    if (from > to) throw new RuleProblem(`reversed port range ${from}-${to}`, '10.0.0.5:8000-8100');
    ranges.push({ from, to });
  }
  ranges.sort((a, b) => a.from - b.from || a.to - b.to);
  const merged: PortRange[] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r.from <= last.to) last.to = Math.max(last.to, r.to);
    else merged.push({ ...r });
  }
  return merged;
}

/** Port list text without the colon: `80,443`, `8000-8100`. */
export function formatPorts(ports: readonly PortRange[]): string {
  return ports.map((r) => (r.from === r.to ? String(r.from) : `${r.from}-${r.to}`)).join(',');
}

/** Canonical host text: `10.20.0.0/16`, `10.0.0.5`, `fd00::1`, `printer.lan`, `*.corp`, `*`. */
export function formatRuleHost(host: RuleHost): string {
  switch (host.kind) {
    case 'any':
      return '*';
    case 'host':
      return host.name;
    case 'suffix':
      return `*.${host.suffix}`;
    case 'cidr':
      return host.prefix === (host.family === 4 ? 32 : 128) ? host.network : `${host.network}/${host.prefix}`;
  }
}

/**
 * Canonical text of a rule, e.g. `10.20.0.0/16`, `printer.lan:80,443`,
 * `[fd00::1]:22`. parseRule(formatRule(r)) is equivalent to r.
 */
export function formatRule(rule: Pick<Rule, 'host' | 'ports'>): string {
  const host = formatRuleHost(rule.host);
  if (!rule.ports) return host;
  const h = rule.host.kind === 'cidr' && rule.host.family === 6 ? `[${host}]` : host;
  return `${h}:${formatPorts(rule.ports)}`;
}

/** Does the rule's port part admit `port`? (`ports: null` admits every port.) */
export function portMatches(rule: Pick<Rule, 'ports'>, port: number): boolean {
  if (!rule.ports) return true;
  return rule.ports.some((r) => port >= r.from && port <= r.to);
}

/** Human text for a rule's ports: "any port", "port 22", "ports 80,443". */
export function describePorts(rule: Pick<Rule, 'ports'>): string {
  if (!rule.ports) return 'any port';
  const single = rule.ports.length === 1 && rule.ports[0]!.from === rule.ports[0]!.to;
  return `${single ? 'port' : 'ports'} ${formatPorts(rule.ports)}`;
}

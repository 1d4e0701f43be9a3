/**
 * The policy decision engine: may a helper's stream reach this destination?
 *
 * This is a security boundary. The semantics, strictly:
 *
 * 1. checkDial(ip, port, name?) is AUTHORITATIVE and is made by the agent on the
 *    address actually dialled, after the agent's own DNS. `ip` is first
 *    normalised (normalizeIp: `0x7f.1`, `2130706433`, `::ffff:127.0.0.1`, zone
 *    ids ... all become one canonical address). Not an IP ⇒ deny. Port outside
 *    1-65535 ⇒ deny.
 * 2. Deny beats allow. A deny rule matches when its port part admits the port
 *    and its host part matches: a CIDR/IP rule contains ip; a host/suffix rule
 *    matches the requested name (lowercased, trailing dot stripped); `*` always.
 *    A deny NAME rule can only match when the name is known: to block an
 *    address whatever name is used, deny the address.
 * 3. Sensitive addresses (loopback, link-local, cloud metadata, multicast,
 *    unspecified, broadcast; see address.ts) are allowed ONLY by an allow
 *    CIDR/IP rule that contains the address, admits the port, and is no broader
 *    than the sensitive range the address lies in (see allowsSensitiveExplicitly).
 *    So `127.0.0.1:8080` and `127.0.0.0/8` allow 127.0.0.1; `0.0.0.0/0`, `::/0`,
 *    `*`, `10.0.0.0/7` and every NAME rule (even `localhost`, or a name that
 *    resolves to 127.0.0.1: DNS rebinding) never do. The metadata addresses
 *    are /32 (/128) ranges of their own, so `169.254.0.0/16` does not allow
 *    169.254.169.254; only the exact address does.
 * 4. Otherwise an allow rule matches when its port part admits the port and:
 *    a CIDR/IP rule contains ip; a host/suffix rule matches the requested name;
 *    `*` matches any ip. No match ⇒ deny.
 * 5. No allow rules ⇒ DEFAULT_ALLOW: the private ranges on any port, which by
 *    rule 3 never include a sensitive address.
 * 6. checkRequest(target) is an early fail-fast check (broker side, before DNS),
 *    never a substitute for checkDial. IP targets, and domain targets that a
 *    resolver would read as an IP (`0x7f.1`, `2130706433`), are judged exactly
 *    like checkDial. Real names: denied if a deny name/`*` rule matches; loopback
 *    names (`localhost`, `*.localhost`, ...) denied unless an allow CIDR rule
 *    explicitly allows loopback on that port; allowed if an allow name/`*` rule
 *    matches; allowed tentatively ("resolve-on-device") if some allow CIDR rule
 *    admits the port (the device decides on the resolved address); else denied.
 *
 * An IPv4 address is contained by an IPv6 CIDR that contains its IPv4-mapped
 * form, so a deny `::/0` covers IPv4 too (and rule 3 still applies to allow).
 */
import type { Target } from '../protocol/target';
import { formatTarget, printable } from '../protocol/target';
import { cidrContains, normalizeIp, sensitiveRange, type IpClass } from './address';
import { describePorts, formatRuleHost, parseRule, portMatches, type Rule } from './rules';

/** Outcome of a policy check. `rule` names the allow rule that decided (or 'resolve-on-device'). */
export type PolicyDecision =
  | { allowed: true; rule: string }
  | { allowed: false; code: 'BRK_POLICY_DENIED'; reason: string };

/** Allow list used when the device gives none: RFC 1918 and ULA, any port. */
export const DEFAULT_ALLOW: readonly string[] = Object.freeze(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']);

/** Rule text reported when a name is allowed early only because it may resolve into an allowed range. */
export const RESOLVE_ON_DEVICE = 'resolve-on-device';

/** Names that /etc/hosts conventionally maps to loopback; refused early unless loopback is allowed explicitly. */
const LOOPBACK_NAMES = new Set(['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback']);

const CLASS_TEXT: Partial<Record<IpClass, string>> = {
  loopback: 'loopback',
  'link-local': 'link-local',
  metadata: 'a cloud metadata address',
  multicast: 'multicast',
  unspecified: 'an unspecified address',
  broadcast: 'broadcast',
};

/** Lowercase, strip one trailing dot; undefined for empty input or an IP literal (names only). */
function normalizeName(name: string | undefined): string | undefined {
  if (typeof name !== 'string' || name === '') return undefined;
  const n = name.toLowerCase().replace(/\.$/, '');
  if (n === '' || normalizeIp(n) !== null) return undefined;
  return n;
}

/** Does a name/suffix rule match `name`? Suffix rules match subdomains only, never the apex. */
function nameMatches(rule: Rule, name: string | undefined): boolean {
  if (name === undefined) return false;
  if (rule.host.kind === 'host') return rule.host.name === name;
  if (rule.host.kind === 'suffix') return name.endsWith(`.${rule.host.suffix}`);
  return false;
}

function cidrRuleContains(rule: Rule, ip: string): boolean {
  return rule.host.kind === 'cidr' && cidrContains(rule.host.family, rule.host.network, rule.host.prefix, ip);
}

/**
 * Does `rule` name the sensitive address `ip` explicitly enough to allow it on
 * `port`? Only a CIDR/IP rule that contains ip, admits the port and is no broader
 * than ip's sensitive range (prefix ≥ the range's prefix, compared in the rule's
 * family). Name rules and `*` never qualify: names can be rebound by DNS.
 */
export function allowsSensitiveExplicitly(rule: Rule, ip: string, port: number): boolean {
  if (rule.host.kind !== 'cidr' || !portMatches(rule, port) || !cidrRuleContains(rule, ip)) return false;
  const range = sensitiveRange(ip);
  if (!range) return true;
  let needed = range.prefix;
  if (rule.host.family === 6 && range.family === 4) needed += 96; // rule covers the IPv4-mapped image
  if (rule.host.family === 4 && range.family === 6) return false;
  return rule.host.prefix >= needed;
}

function ruleList(rules: readonly Rule[], max = 6): string {
  const shown = rules.slice(0, max).map((r) => r.text);
  return rules.length > max ? `${shown.join(', ')} and ${rules.length - max} more` : shown.join(', ');
}

/** An allow/deny rule set with the decision procedure described at the top of this file. Immutable. */
export class Policy {
  /**
   * Decisions already made: a decision depends only on its inputs and the rules,
   * which never change. Deciding parses the address once per rule (ipaddr.js), 3 % of
   * the broker's and the device's JavaScript per connection; a helper asks for the
   * same few targets over and over.
   */
  private readonly dialDecisions = new DecisionMemo();
  private readonly requestDecisions = new DecisionMemo();

  private constructor(
    readonly allow: readonly Rule[],
    readonly deny: readonly Rule[],
    readonly isDefault: boolean,
  ) {}

  /** Build from rule strings (throws BRK_BAD_OPTION on a bad rule). Empty allow ⇒ DEFAULT_ALLOW. */
  static fromRules(allow: readonly string[], deny: readonly string[]): Policy {
    const isDefault = allow.length === 0;
    const a = (isDefault ? DEFAULT_ALLOW : allow).map(parseRule);
    const d = deny.map(parseRule);
    return new Policy(Object.freeze(a), Object.freeze(d), isDefault);
  }

  /**
   * Authoritative check on the address actually dialled (after the agent's own
   * DNS). requestedName = the name the helper asked for, if any; it only feeds
   * name rules and messages, it can never make a sensitive address allowed.
   */
  checkDial(ip: string, port: number, requestedName?: string): PolicyDecision {
    if (typeof ip !== 'string' || !Number.isInteger(port) || (requestedName !== undefined && typeof requestedName !== 'string')) {
      return this.decideDial(ip, port, requestedName);
    }
    // The length of `ip` keeps the key unambiguous whatever either string holds.
    return this.dialDecisions.get(`${port} ${ip.length} ${ip}${requestedName ?? ''}`, () => this.decideDial(ip, port, requestedName));
  }

  private decideDial(ip: string, port: number, requestedName?: string): PolicyDecision {
    const addr = typeof ip === 'string' ? normalizeIp(ip) : null;
    const name = normalizeName(requestedName);
    if (addr === null) return deny(`"${printable(String(ip), 60)}" is not an IP address; the device only dials checked addresses`);
    if (!Number.isInteger(port) || port < 1 || port > 65535) return deny(`bad port ${printable(String(port), 20)}: use 1-65535`);
    const where = formatTarget({ host: addr, port });
    const subject = name ? `${printable(name, 80)}:${port} (${addr})` : where;

    for (const rule of this.deny) {
      if (!portMatches(rule, port)) continue;
      if (rule.host.kind === 'any' || cidrRuleContains(rule, addr) || nameMatches(rule, name)) {
        return deny(`${subject} is denied by rule "${rule.text}"`);
      }
    }

    const range = sensitiveRange(addr);
    if (range) {
      const rule = this.allow.find((r) => allowsSensitiveExplicitly(r, addr, port));
      if (rule) return { allowed: true, rule: rule.text };
      const what = CLASS_TEXT[range.class] ?? range.class;
      const lead = name ? `${printable(name, 80)}:${port} resolved to ${addr}, which is ${what}` : `${where} is ${what}`;
      return deny(`${lead}; name it explicitly (--allow ${where}) to allow it`);
    }

    for (const rule of this.allow) {
      if (!portMatches(rule, port)) continue;
      if (rule.host.kind === 'any' || cidrRuleContains(rule, addr) || nameMatches(rule, name)) {
        return { allowed: true, rule: rule.text };
      }
    }
    return deny(`${subject} is not in the device's allow list (${this.allowListText()})`);
  }

  /** Early fail-fast check (broker side, before DNS); see rule 6 at the top of this file. */
  checkRequest(target: Target): PolicyDecision {
    if (typeof target.host !== 'string' || !Number.isInteger(target.port)) return this.decideRequest(target);
    return this.requestDecisions.get(`${target.kind} ${target.port} ${target.host}`, () => this.decideRequest(target));
  }

  private decideRequest(target: Target): PolicyDecision {
    const { port } = target;
    if (target.kind !== 'domain') return this.checkDial(target.host, port);
    const asIp = normalizeIp(target.host);
    if (asIp !== null) return this.checkDial(asIp, port);
    const name = normalizeName(target.host);
    if (name === undefined) return deny(`"${printable(String(target.host), 60)}" is not a valid destination`);
    const subject = `${printable(name, 80)}:${port}`;

    for (const rule of this.deny) {
      if (portMatches(rule, port) && (rule.host.kind === 'any' || nameMatches(rule, name))) {
        return deny(`${subject} is denied by rule "${rule.text}"`);
      }
    }
    if (LOOPBACK_NAMES.has(name) || name.endsWith('.localhost')) {
      const rule = this.allow.find((r) => allowsSensitiveExplicitly(r, '127.0.0.1', port) || allowsSensitiveExplicitly(r, '::1', port));
      if (rule) return { allowed: true, rule: rule.text };
      const ex = formatTarget({ host: '127.0.0.1', port });
      return deny(`${subject} is loopback; name the address explicitly (--allow ${ex}) to allow it`);
    }
    for (const rule of this.allow) {
      if (portMatches(rule, port) && (rule.host.kind === 'any' || nameMatches(rule, name))) {
        return { allowed: true, rule: rule.text };
      }
    }
    if (this.allow.some((r) => r.host.kind === 'cidr' && portMatches(r, port))) {
      return { allowed: true, rule: RESOLVE_ON_DEVICE };
    }
    return deny(`${subject} is not in the device's allow list (${this.allowListText()})`);
  }

  /** Human-readable lines for `join` output ("allow 10.20.0.0/16 any port", ...). */
  describe(): string[] {
    const lines: string[] = [];
    if (this.isDefault) {
      lines.push(`allow private ranges (default): ${this.allow.map((r) => formatRuleHost(r.host)).join(', ')} any port`);
    } else {
      for (const r of this.allow) lines.push(`allow ${hostText(r)} ${describePorts(r)}`);
    }
    for (const r of this.deny) lines.push(`deny ${hostText(r)} ${describePorts(r)}`);
    lines.push('never loopback, link-local, cloud metadata, multicast, unspecified or broadcast addresses unless an allow rule names the address');
    lines.push('names resolve on the device; the rules are checked on the address actually dialled');
    return lines;
  }

  private allowListText(): string {
    return this.isDefault ? `private ranges by default: ${ruleList(this.allow)}` : ruleList(this.allow);
  }
}

function hostText(r: Rule): string {
  if (r.host.kind === 'any') return 'any host';
  if (r.host.kind === 'suffix') return `*.${r.host.suffix} (subdomains)`;
  return formatRuleHost(r.host);
}

/** At most MAX decisions by key; full, it starts afresh (a scan of many targets just misses). */
class DecisionMemo {
  static readonly MAX = 1024;
  /** Keys longer than this are decided every time (hostile names stay out of memory). */
  static readonly MAX_KEY = 300;
  private readonly map = new Map<string, PolicyDecision>();

  get(key: string, decide: () => PolicyDecision): PolicyDecision {
    const known = this.map.get(key);
    if (known) return known;
    const decision = Object.freeze(decide());
    if (key.length <= DecisionMemo.MAX_KEY) {
      if (this.map.size >= DecisionMemo.MAX) this.map.clear();
      this.map.set(key, decision);
    }
    return decision;
  }
}

function deny(reason: string): PolicyDecision {
  return { allowed: false, code: 'BRK_POLICY_DENIED', reason };
}


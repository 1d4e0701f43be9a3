/**
 * The network-proxy descriptor (claim 6): what helpers may reach through a
 * device. The agent publishes it, the broker checks requests against it early,
 * every helper is shown it on join. It crosses trust boundaries, so parsing is
 * strict and bounded: a byte limit BEFORE JSON.parse, a strict zod schema
 * (unknown keys, `__proto__` included, are refused), every rule through
 * parseRule, and one-line errors naming the field path.
 *
 * Decisions: `allow`, `deny`, `dns` and `protocols` may be omitted on input and
 * default to [], [], 'remote' and ['socks5','http']; `version` is required.
 * Parsed rules are returned in canonical form (formatRule), so the broker, the
 * agent and every helper see one spelling. parseDescriptor does not judge
 * whether expiresAt is in the past: that is the session owner's decision.
 */
import { z } from 'zod';
import { BrokerError } from '../errors';
import { Policy } from '../policy/policy';
import { describePorts, formatRule, formatRuleHost, parseRule } from '../policy/rules';
import { Limits, PROTOCOL_VERSION } from './constants';
import { printable } from './target';

/** The descriptor as every component sees it after parsing. */
export interface Descriptor {
  version: 1;
  label?: string;
  allow: string[];
  deny: string[];
  dns: 'remote';
  protocols: Array<'socks5' | 'http'>;
  maxHelpers?: number;
  /** ISO 8601 date-time with Z or an offset. */
  expiresAt?: string;
  approve?: boolean;
}

const KNOWN_KEYS = ['version', 'label', 'allow', 'deny', 'dns', 'protocols', 'maxHelpers', 'expiresAt', 'approve'];
const PROTOCOLS = ['socks5', 'http'] as const;
const LABEL_RE = /^[^\p{C}\p{Zl}\p{Zp}]+$/u;

const rules = () =>
  z
    .array(z.string({ error: 'must be a rule string' }), { error: 'must be an array of rule strings' })
    .max(Limits.descriptorRules, { error: `at most ${Limits.descriptorRules} rules` })
    .optional();

const Schema = z.strictObject({
  version: z.literal(PROTOCOL_VERSION, { error: `must be ${PROTOCOL_VERSION}` }),
  label: z.string({ error: 'must be a string' }).optional(),
  allow: rules(),
  deny: rules(),
  dns: z.literal('remote', { error: 'must be "remote" (names resolve on the device)' }).optional(),
  protocols: z
    .array(z.enum(PROTOCOLS, { error: 'must be "socks5" or "http"' }), { error: 'must be an array like ["socks5","http"]' })
    .min(1, { error: 'must name at least one protocol' })
    .max(PROTOCOLS.length, { error: 'must not repeat a protocol' })
    .optional(),
  maxHelpers: z
    .int({ error: 'must be a whole number' })
    .min(1, { error: `must be 1-${Limits.maxHelpers}` })
    .max(Limits.maxHelpers, { error: `must be 1-${Limits.maxHelpers}` })
    .optional(),
  expiresAt: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time like 2030-01-01T12:00:00Z' }).optional(),
  approve: z.boolean({ error: 'must be true or false' }).optional(),
});

function bad(path: string, problem: string): BrokerError {
  return new BrokerError('BRK_BAD_DESCRIPTOR', `${path}: ${problem}`);
}

function pathText(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : `${acc}.${printable(String(p), 40)}`), 'descriptor');
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

/** Bytes → JSON value, with the size limit checked before any parsing. */
function decode(input: string | Buffer): unknown {
  const size = typeof input === 'string' ? (input.length > Limits.descriptorBytes ? input.length : Buffer.byteLength(input, 'utf8')) : input.length;
  if (size > Limits.descriptorBytes) throw bad('descriptor', `${size} bytes is over the ${Limits.descriptorBytes}-byte limit`);
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input);
    } catch {
      throw bad('descriptor', 'not valid UTF-8');
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw bad('descriptor', `not valid JSON (${printable(err instanceof Error ? err.message : String(err), 80)})`);
  }
}

/** An already-parsed value must also fit the byte limit once serialised (bounds depth and size). */
function checkValueSize(value: unknown): void {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    throw bad('descriptor', 'not representable as JSON (cyclic or too deeply nested)');
  }
  if (json === undefined) throw bad('descriptor', `must be a JSON object, got ${kindOf(value)}`);
  if (json.length > Limits.descriptorBytes) throw bad('descriptor', `over the ${Limits.descriptorBytes}-byte limit`);
}

/**
 * Parse and validate a descriptor from JSON text, a Buffer of JSON, or an
 * already-parsed value. Throws BrokerError('BRK_BAD_DESCRIPTOR') with one line
 * naming the field path and the problem, e.g.
 * `descriptor.allow[2]: bad rule "10.0.0.0/33": prefix must be 0-32; ...`.
 */
export function parseDescriptor(input: string | Buffer | unknown): Descriptor {
  let value: unknown;
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    value = decode(input);
  } else {
    checkValueSize(input);
    value = input;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw bad('descriptor', `must be a JSON object, got ${kindOf(value)}`);
  }
  const obj = value as Record<string, unknown>;
  if (Object.prototype.hasOwnProperty.call(obj, 'version') && obj['version'] !== PROTOCOL_VERSION) {
    throw bad('descriptor.version', `unsupported version ${printable(JSON.stringify(obj['version']) ?? String(obj['version']), 20)} (this program speaks version ${PROTOCOL_VERSION})`);
  }

  const result = Schema.safeParse(obj);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => `"${printable(k, 40)}"`).join(', ');
      throw bad(pathText(issue.path), `unknown key ${keys} (known keys: ${KNOWN_KEYS.join(', ')})`);
    }
    const missing = issue.path.length === 1 && !Object.prototype.hasOwnProperty.call(obj, issue.path[0]!);
    throw bad(pathText(issue.path), missing ? 'required' : issue.message);
  }
  const d = result.data;

  const allow = d.allow ?? [];
  const deny = d.deny ?? [];
  if (allow.length + deny.length > Limits.descriptorRules) {
    throw bad('descriptor', `${allow.length + deny.length} rules; at most ${Limits.descriptorRules} allow and deny rules in total`);
  }
  const canon = (list: string[], field: string): string[] =>
    list.map((text, i) => {
      try {
        return parseRule(text).text;
      } catch (err) {
        throw bad(`descriptor.${field}[${i}]`, err instanceof Error ? err.message : String(err));
      }
    });

  if (d.label !== undefined) {
    const chars = [...d.label].length;
    if (chars === 0) throw bad('descriptor.label', 'must not be empty (leave it out instead)');
    if (chars > Limits.labelChars) throw bad('descriptor.label', `${chars} characters; at most ${Limits.labelChars}`);
    if (!LABEL_RE.test(d.label)) throw bad('descriptor.label', 'contains control or invisible formatting characters');
  }
  const protocols = d.protocols ?? [...PROTOCOLS];
  if (new Set(protocols).size !== protocols.length) throw bad('descriptor.protocols', 'must not repeat a protocol');
  if (d.expiresAt !== undefined && !Number.isFinite(Date.parse(d.expiresAt))) {
    throw bad('descriptor.expiresAt', 'not a valid date');
  }

  // A fresh object with known keys only, in a fixed order.
  return {
    version: 1,
    ...(d.label !== undefined ? { label: d.label } : {}),
    allow: canon(allow, 'allow'),
    deny: canon(deny, 'deny'),
    dns: 'remote' as const,
    protocols: [...protocols],
    ...(d.maxHelpers !== undefined ? { maxHelpers: d.maxHelpers } : {}),
    ...(d.expiresAt !== undefined ? { expiresAt: d.expiresAt } : {}),
    ...(d.approve !== undefined ? { approve: d.approve } : {}),
  };
}

/**
 * Build a descriptor from local options (CLI / programmatic API): rules are
 * canonicalised with formatRule and the result validated by parseDescriptor.
 * Throws BrokerError('BRK_BAD_OPTION') (these are the caller's own options).
 */
export function makeDescriptor(opts: {
  label?: string;
  allow?: string[];
  deny?: string[];
  maxHelpers?: number;
  expiresAt?: string;
  approve?: boolean;
}): Descriptor {
  const raw: Record<string, unknown> = {
    version: PROTOCOL_VERSION,
    allow: (opts.allow ?? []).map((r) => formatRule(parseRule(r))),
    deny: (opts.deny ?? []).map((r) => formatRule(parseRule(r))),
    dns: 'remote',
    protocols: [...PROTOCOLS],
  };
  if (opts.label !== undefined) raw['label'] = opts.label;
  if (opts.maxHelpers !== undefined) raw['maxHelpers'] = opts.maxHelpers;
  if (opts.expiresAt !== undefined) raw['expiresAt'] = opts.expiresAt;
  if (opts.approve !== undefined) raw['approve'] = opts.approve;
  try {
    return parseDescriptor(raw);
  } catch (err) {
    if (err instanceof BrokerError && err.code === 'BRK_BAD_DESCRIPTOR') throw new BrokerError('BRK_BAD_OPTION', err.message, { cause: err });
    throw err;
  }
}

/** The policy a descriptor stands for (empty allow ⇒ the default private ranges). */
export function descriptorPolicy(d: Descriptor): Policy {
  return Policy.fromRules(d.allow, d.deny);
}

function ruleLine(text: string): string {
  try {
    const r = parseRule(text);
    const host = r.host.kind === 'any' ? 'any host' : r.host.kind === 'suffix' ? `${formatRuleHost(r.host)} (subdomains)` : formatRuleHost(r.host);
    return `    ${host} (${describePorts(r)})`;
  } catch {
    return `    ${printable(String(text), 60)} (invalid rule, ignored)`;
  }
}

/**
 * Readable multi-line text for a helper: label, what may be reached, what is
 * denied, that DNS resolves on the device, protocols, helper cap, expiry,
 * approval. Safe to print to a terminal (hostile text is escaped).
 */
export function formatDescriptor(d: Descriptor): string {
  const lines: string[] = [];
  lines.push(`device: ${d.label !== undefined ? printable(d.label, Limits.labelChars) : '(no label)'}`);
  if (d.allow.length === 0) {
    lines.push('may reach: private ranges (default): 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7 (any port)');
  } else {
    lines.push('may reach:', ...d.allow.map(ruleLine));
  }
  if (d.deny.length > 0) lines.push('denied:', ...d.deny.map(ruleLine));
  lines.push('never: loopback, link-local, cloud metadata, multicast, unspecified or broadcast addresses unless the allow list names the address');
  lines.push('dns: names resolve on the device');
  lines.push(`protocols: ${d.protocols.map((p) => printable(String(p), 10)).join(', ')}`);
  lines.push(`max helpers: ${d.maxHelpers ?? 'not limited by the device'}`);
  lines.push(`expires: ${d.expiresAt !== undefined ? printable(d.expiresAt, 40) : 'when the device disconnects'}`);
  if (d.approve) lines.push('approval: the device approves each helper before it can connect');
  return lines.join('\n');
}

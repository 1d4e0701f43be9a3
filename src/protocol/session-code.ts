/**
 * Session codes: the secret a device shows its user and the helper types in.
 * A code is the SSH user name a helper logs in with, so it must be long enough
 * to be unguessable (105 bits), short enough to read over the phone, and forgiving
 * of how humans copy it (case, separators, Crockford look-alikes).
 *
 * Canonical form: 21 lower-case Crockford base32 characters in three groups of
 * seven joined by '-', e.g. `h3k9x2m-p4q8r7t-w2z5n6c`.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Crockford base32 alphabet, lower-case (no i, l, o, u). */
export const SESSION_CODE_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

/** Characters in a code (excluding separators). 21 × 5 bits = 105 bits of entropy. */
export const SESSION_CODE_CHARS = 21;

/** Characters per group in the canonical form. */
const GROUP = 7;

/** Longest input {@link normalizeSessionCode} will look at; anything longer is not a code. */
const MAX_INPUT_CHARS = 64;

/**
 * A fresh random code in canonical form. Each character takes 5 bits straight
 * from crypto.randomBytes; 32 divides 256, so every character is uniform (no
 * modulo bias, no rejection needed).
 */
export function generateSessionCode(): string {
  const bytes = randomBytes(Math.ceil((SESSION_CODE_CHARS * 5) / 8)); // 14 bytes = 112 bits
  let acc = 0;
  let bits = 0;
  let out = '';
  for (const byte of bytes) {
    acc = ((acc << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5 && out.length < SESSION_CODE_CHARS) {
      bits -= 5;
      out += SESSION_CODE_ALPHABET[(acc >> bits) & 31];
    }
  }
  return group(out);
}

function group(raw: string): string {
  return `${raw.slice(0, GROUP)}-${raw.slice(GROUP, 2 * GROUP)}-${raw.slice(2 * GROUP)}`;
}

const CODE_BODY = new RegExp(`^[${SESSION_CODE_ALPHABET}]{${SESSION_CODE_CHARS}}$`);

/**
 * Turn what a human typed into the canonical code, or null if it is not
 * code-shaped. Case-insensitive; whitespace, '-' and '_' anywhere are ignored;
 * Crockford aliases `i`/`l` → `1` and `o` → `0`. Inputs longer than 64 characters
 * are rejected before any other work (they arrive as SSH user names from anyone).
 */
export function normalizeSessionCode(input: string): string | null {
  if (typeof input !== 'string' || input.length > MAX_INPUT_CHARS) return null;
  const body = input
    .toLowerCase()
    .replace(/[\s_-]+/g, '')
    .replace(/[il]/g, '1')
    .replace(/o/g, '0');
  return CODE_BODY.test(body) ? group(body) : null;
}

/**
 * Hex SHA-256 of the canonical code: the session registry's key, so looking a
 * code up never compares secrets byte by byte (and a heap dump holds digests).
 * Input that is not code-shaped is hashed as given; its digest matches no code.
 */
export function sessionCodeDigest(code: string): string {
  const canonical = normalizeSessionCode(code) ?? String(code);
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/**
 * Constant-time equality of two codes (after normalisation): compares
 * equal-length SHA-256 digests with crypto.timingSafeEqual, so timing reveals
 * nothing about how much of a guess was right. Non-code input equals nothing.
 */
export function sessionCodesEqual(a: string, b: string): boolean {
  const na = normalizeSessionCode(a);
  const nb = normalizeSessionCode(b);
  const da = createHash('sha256').update(na ?? 'invalid-a', 'utf8').digest();
  const db = createHash('sha256').update(nb ?? 'invalid-b', 'utf8').digest();
  const same = timingSafeEqual(da, db);
  return same && na !== null && nb !== null;
}

/**
 * Log-safe form of a code: its first 4 characters and '…' (20 of 105 bits,
 * enough to tell sessions apart in logs, useless for joining). Works on any
 * string (e.g. a mistyped user name): characters outside the alphabet print as '?'.
 */
export function redactSessionCode(code: string): string {
  const canonical = normalizeSessionCode(code);
  const source = canonical ?? String(code ?? '');
  const head = Array.from(source.slice(0, 4))
    .map((ch) => (/[0-9a-z-]/i.test(ch) ? ch : '?'))
    .join('');
  return `${head}…`;
}

/**
 * Whether an SSH user name is (after normalisation) a session code, as opposed
 * to a reserved user such as `expose`.
 */
export function looksLikeSessionCode(user: string): boolean {
  return normalizeSessionCode(user) !== null;
}

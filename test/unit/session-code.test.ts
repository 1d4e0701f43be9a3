import { createHash } from 'node:crypto';
import crypto = require('node:crypto');
import {
  generateSessionCode,
  looksLikeSessionCode,
  normalizeSessionCode,
  redactSessionCode,
  SESSION_CODE_ALPHABET,
  sessionCodeDigest,
  sessionCodesEqual,
} from '../../src/protocol/session-code';

const SHAPE = /^[0-9a-hjkmnp-tv-z]{7}-[0-9a-hjkmnp-tv-z]{7}-[0-9a-hjkmnp-tv-z]{7}$/;

describe('generateSessionCode', () => {
  test('canonical shape: 7-7-7 lower-case Crockford base32', () => {
    expect(SESSION_CODE_ALPHABET).toBe('0123456789abcdefghjkmnpqrstvwxyz');
    for (let i = 0; i < 1000; i++) {
      const code = generateSessionCode();
      expect(code).toMatch(SHAPE);
      expect(code).not.toMatch(/[ilou]/);
      expect(normalizeSessionCode(code)).toBe(code);
      expect(looksLikeSessionCode(code)).toBe(true);
    }
  });

  test('codes are unique and every character position is uniform over the alphabet', () => {
    const N = 20_000;
    const seen = new Set<string>();
    // counts[position][symbol]
    const counts = Array.from({ length: 21 }, () => new Array<number>(32).fill(0));
    for (let i = 0; i < N; i++) {
      const code = generateSessionCode();
      seen.add(code);
      const raw = code.replace(/-/g, '');
      for (let p = 0; p < 21; p++) counts[p]![SESSION_CODE_ALPHABET.indexOf(raw[p]!)]!++;
    }
    expect(seen.size).toBe(N);
    // Chi-square per position, 31 degrees of freedom; p=1e-7 critical value ≈ 91 (so no flakes).
    // (A stuck or biased bit fails this by orders of magnitude.)
    const expected = N / 32;
    for (let p = 0; p < 21; p++) {
      const chi = counts[p]!.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0);
      expect(chi).toBeLessThan(91);
    }
  });

  test('uses 105 bits from crypto.randomBytes: all-zero and all-one bytes map to the alphabet ends', () => {
    const spy = jest.spyOn(crypto, 'randomBytes');
    try {
      spy.mockImplementationOnce(((n: number) => Buffer.alloc(n, 0x00)) as never);
      expect(generateSessionCode()).toBe('0000000-0000000-0000000');
      spy.mockImplementationOnce(((n: number) => Buffer.alloc(n, 0xff)) as never);
      expect(generateSessionCode()).toBe('zzzzzzz-zzzzzzz-zzzzzzz');
      // 0x84 0x21 ... = 10000 10000 10000 ... → every char is '0'+16 = 'g'
      spy.mockImplementationOnce(((n: number) => Buffer.from('8421084210842108421084210842', 'hex').subarray(0, n)) as never);
      expect(generateSessionCode()).toBe('ggggggg-ggggggg-ggggggg');
      expect(spy).toHaveBeenCalledWith(14);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('normalizeSessionCode', () => {
  const canonical = 'h3k9x2m-p4q8r7t-w2z5n6c';
  test.each<[string, string | null]>([
    [canonical, canonical],
    ['H3K9X2M-P4Q8R7T-W2Z5N6C', canonical],
    ['h3k9x2mp4q8r7tw2z5n6c', canonical],
    ['  h3k9 x2m p4q8 r7t w2z5 n6c  ', canonical],
    ['h3k9x2m_p4q8r7t_w2z5n6c', canonical],
    ['h-3-k-9-x-2-m-p4q8r7tw2z5n6c', canonical],
    ['h3k9x2m--p4q8r7t\tw2z5n6c\n', canonical],
    ['\u00a0h3k9x2m-p4q8r7t-w2z5n6c\u2003', canonical], // unicode spaces from copy/paste
    // Crockford aliases
    ['ilo0000-0000000-0000000', '1100000-0000000-0000000'],
    ['ILO0000-0000000-0000000', '1100000-0000000-0000000'],
    // wrong length
    ['h3k9x2m-p4q8r7t-w2z5n6', null],
    ['h3k9x2m-p4q8r7t-w2z5n6cc', null],
    ['', null],
    ['-- -- __', null],
    // wrong characters
    ['h3k9x2m-p4q8r7t-w2z5n6u', null], // 'u' is not Crockford
    ['h3k9x2m.p4q8r7t.w2z5n6c', null],
    ['h3k9x2m-p4q8r7t-w2z5n6*', null],
    ['ｈ3k9x2m-p4q8r7t-w2z5n6c', null], // fullwidth
    ['h3k9x2m-p4q8r7t-w2z5n6\u0000', null],
    ['h3k9x2m-p4q8r7t-w2z5n6c\u0000', null],
    ['İ3k9x2m-p4q8r7t-w2z5n6c', null], // Turkish dotted capital I lower-cases to two code units
    ['expose', null],
    ['root', null],
    ["h3k9x2m' OR '1'='1", null],
    ['../../../../etc/passwd', null],
    // hostile length: rejected even though it would normalise to a code
    [`${' '.repeat(44)}h3k9x2mp4q8r7tw2z5n6c`, null],
    [`${'-'.repeat(100)}h3k9x2mp4q8r7tw2z5n6c`, null],
    ['a'.repeat(1_000_000), null],
  ])('%j → %j', (input, expected) => {
    expect(normalizeSessionCode(input)).toBe(expected);
    expect(looksLikeSessionCode(input)).toBe(expected !== null);
  });

  test('exactly 64 characters is still considered, 65 is not', () => {
    const pad64 = ' '.repeat(64 - 21) + 'h3k9x2mp4q8r7tw2z5n6c';
    expect(pad64).toHaveLength(64);
    expect(normalizeSessionCode(pad64)).toBe(canonical);
    expect(normalizeSessionCode(' ' + pad64)).toBeNull();
  });

  test('non-string input is not a code', () => {
    expect(normalizeSessionCode(undefined as unknown as string)).toBeNull();
    expect(normalizeSessionCode(42 as unknown as string)).toBeNull();
    expect(normalizeSessionCode({ length: 1 } as unknown as string)).toBeNull();
  });
});

describe('digest and equality', () => {
  test('digest is hex SHA-256 of the canonical form, for any spelling of the code', () => {
    const code = generateSessionCode();
    const expected = createHash('sha256').update(code).digest('hex');
    expect(sessionCodeDigest(code)).toBe(expected);
    expect(sessionCodeDigest(code.toUpperCase().replace(/-/g, ' '))).toBe(expected);
    expect(sessionCodeDigest(code)).toMatch(/^[0-9a-f]{64}$/);
    expect(sessionCodeDigest(generateSessionCode())).not.toBe(expected);
  });

  test('non-code input gets a digest that matches no code', () => {
    const d = sessionCodeDigest('expose');
    expect(d).toMatch(/^[0-9a-f]{64}$/);
    expect(d).not.toBe(sessionCodeDigest(generateSessionCode()));
  });

  test('sessionCodesEqual: equal codes in any spelling, different codes never', () => {
    const a = generateSessionCode();
    const b = generateSessionCode();
    expect(sessionCodesEqual(a, a)).toBe(true);
    expect(sessionCodesEqual(a, a.toUpperCase())).toBe(true);
    expect(sessionCodesEqual(a, a.replace(/-/g, ''))).toBe(true);
    expect(sessionCodesEqual(a, b)).toBe(false);
    // one character different, in every position
    const raw = a.replace(/-/g, '');
    for (let p = 0; p < raw.length; p++) {
      const other = raw[p] === '0' ? '1' : '0';
      expect(sessionCodesEqual(a, raw.slice(0, p) + other + raw.slice(p + 1))).toBe(false);
    }
    // prefixes and non-codes
    expect(sessionCodesEqual(a, a.slice(0, 10))).toBe(false);
    expect(sessionCodesEqual('', '')).toBe(false);
    expect(sessionCodesEqual('expose', 'expose')).toBe(false);
    expect(sessionCodesEqual('x'.repeat(100), 'x'.repeat(100))).toBe(false);
  });

  test('sessionCodesEqual compares fixed-length digests with timingSafeEqual', () => {
    const spy = jest.spyOn(crypto, 'timingSafeEqual');
    try {
      const a = generateSessionCode();
      sessionCodesEqual(a, 'short');
      sessionCodesEqual(a, a);
      sessionCodesEqual('x'.repeat(60), a);
      expect(spy).toHaveBeenCalledTimes(3);
      for (const [x, y] of spy.mock.calls) {
        expect((x as Buffer).length).toBe(32);
        expect((y as Buffer).length).toBe(32);
      }
    } finally {
      spy.mockRestore();
    }
  });
});

describe('redactSessionCode', () => {
  test('keeps only the first 4 characters', () => {
    const code = generateSessionCode();
    const r = redactSessionCode(code);
    expect(r).toBe(`${code.slice(0, 4)}…`);
    expect(r).not.toContain(code.slice(4, 8));
    expect(redactSessionCode(code.toUpperCase())).toBe(r); // normalised first
  });

  test('never prints more than 4 characters of anything, and sanitises junk', () => {
    expect(redactSessionCode('expose')).toBe('expo…');
    expect(redactSessionCode('ab')).toBe('ab…');
    expect(redactSessionCode('')).toBe('…');
    expect(redactSessionCode('\u001b[2Jhello')).toBe('??2J…');
    expect(redactSessionCode('a\nb\rcdef')).toBe('a?b?…');
  });
});

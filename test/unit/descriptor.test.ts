import { BrokerError } from '../../src/errors';
import { Limits } from '../../src/protocol/constants';
import { descriptorPolicy, formatDescriptor, makeDescriptor, parseDescriptor, type Descriptor } from '../../src/protocol/descriptor';

const EXAMPLE = {
  version: 1,
  label: 'front-desk-pc',
  allow: ['10.20.0.0/16', 'printer.lan:80,443', '127.0.0.1:8080'],
  deny: ['10.20.0.1'],
  dns: 'remote',
  protocols: ['socks5', 'http'],
  maxHelpers: 4,
  expiresAt: '2030-01-01T12:00:00Z',
};

function refusal(input: unknown): BrokerError {
  try {
    parseDescriptor(input);
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    const e = err as BrokerError;
    expect(e.code).toBe('BRK_BAD_DESCRIPTOR');
    expect(e.message).not.toMatch(/[\n\r]/);
    return e;
  }
  throw new Error(`expected ${JSON.stringify(input)?.slice(0, 80)} to be refused`);
}

describe('parseDescriptor: accepted', () => {
  test('the design example, as text, Buffer and object', () => {
    const text = JSON.stringify(EXAMPLE);
    for (const input of [text, Buffer.from(text), structuredClone(EXAMPLE)]) {
      expect(parseDescriptor(input)).toEqual(EXAMPLE);
    }
  });

  test('minimal descriptor gets defaults', () => {
    expect(parseDescriptor('{"version":1}')).toEqual({ version: 1, allow: [], deny: [], dns: 'remote', protocols: ['socks5', 'http'] });
  });

  test('rules come back canonical', () => {
    const d = parseDescriptor({ version: 1, allow: ['0x7f.1:80', '10.20.1.5/16', 'Printer.LAN.:443,80', '[fd00::1]:22'], deny: ['::ffff:10.20.0.1'] });
    expect(d.allow).toEqual(['127.0.0.1:80', '10.20.0.0/16', 'printer.lan:80,443', '[fd00::1]:22']);
    expect(d.deny).toEqual(['10.20.0.1']);
  });

  test('returns a fresh plain object without extra keys', () => {
    const d = parseDescriptor({ ...EXAMPLE, approve: true });
    expect(Object.keys(d)).toEqual(['version', 'label', 'allow', 'deny', 'dns', 'protocols', 'maxHelpers', 'expiresAt', 'approve']);
    expect(Object.getPrototypeOf(d)).toBe(Object.prototype);
  });

  test('limits at their edge are fine', () => {
    const allow = Array.from({ length: Limits.descriptorRules }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
    expect(parseDescriptor({ version: 1, allow }).allow).toHaveLength(Limits.descriptorRules);
    expect(parseDescriptor({ version: 1, label: 'x'.repeat(Limits.labelChars) }).label).toHaveLength(Limits.labelChars);
    expect(parseDescriptor({ version: 1, label: 'Bürö PC 🖨' }).label).toBe('Bürö PC 🖨');
    expect(parseDescriptor({ version: 1, maxHelpers: Limits.maxHelpers }).maxHelpers).toBe(Limits.maxHelpers);
    expect(parseDescriptor({ version: 1, expiresAt: '2030-01-01T12:00:00.123+02:00' }).expiresAt).toBe('2030-01-01T12:00:00.123+02:00');
  });
});

describe('parseDescriptor: refused', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not JSON', '{version:1}', /^descriptor: not valid JSON/],
    ['empty text', '', /^descriptor: not valid JSON/],
    ['number', '42', /^descriptor: must be a JSON object, got a number$/],
    ['null', 'null', /got null/],
    ['array', '[{"version":1}]', /got an array/],
    ['string', '"hello"', /got a string/],
    ['undefined object', undefined, /must be a JSON object/],
    ['missing version', '{}', /^descriptor\.version: required$/],
    ['wrong version', '{"version":2}', /^descriptor\.version: unsupported version 2 \(this program speaks version 1\)$/],
    ['string version', '{"version":"1"}', /^descriptor\.version: unsupported version "1"/],
    ['unknown key', '{"version":1,"allowed":[]}', /^descriptor: unknown key "allowed" \(known keys: version, label/],
    ['__proto__ key', '{"version":1,"__proto__":{"isAdmin":true}}', /^descriptor: unknown key "__proto__"/],
    ['constructor key', '{"version":1,"constructor":{"prototype":{"x":1}}}', /unknown key "constructor"/],
    ['hostile key escaped', '{"version":1,"a\\u001b[2Jb":1}', /unknown key "a\\x1b\[2Jb"/],
    ['allow not array', '{"version":1,"allow":"10.0.0.0/8"}', /^descriptor\.allow: must be an array of rule strings$/],
    ['allow item not string', '{"version":1,"allow":["10.0.0.0/8",7]}', /^descriptor\.allow\[1\]: must be a rule string$/],
    ['allow item nested', '{"version":1,"allow":[["10.0.0.0/8"]]}', /^descriptor\.allow\[0\]: must be a rule string$/],
    ['bad rule', '{"version":1,"allow":["10.0.0.0/8","printer.lan","10.0.0.0/33"]}',
      /^descriptor\.allow\[2\]: bad rule "10\.0\.0\.0\/33": prefix must be 0-32/],
    ['bad deny rule', '{"version":1,"deny":["10.0.0.1:0"]}', /^descriptor\.deny\[0\]: bad rule "10\.0\.0\.1:0": port 0 out of range/],
    ['dns local', '{"version":1,"dns":"local"}', /^descriptor\.dns: must be "remote"/],
    ['protocols unknown', '{"version":1,"protocols":["socks4"]}', /^descriptor\.protocols\[0\]: must be "socks5" or "http"$/],
    ['protocols empty', '{"version":1,"protocols":[]}', /^descriptor\.protocols: must name at least one protocol$/],
    ['protocols repeated', '{"version":1,"protocols":["http","http"]}', /^descriptor\.protocols: must not repeat a protocol$/],
    ['maxHelpers 0', '{"version":1,"maxHelpers":0}', /^descriptor\.maxHelpers: must be 1-64$/],
    ['maxHelpers too big', '{"version":1,"maxHelpers":65}', /^descriptor\.maxHelpers: must be 1-64$/],
    ['maxHelpers fraction', '{"version":1,"maxHelpers":2.5}', /^descriptor\.maxHelpers: must be a whole number$/],
    ['maxHelpers string', '{"version":1,"maxHelpers":"4"}', /^descriptor\.maxHelpers: must be a whole number$/],
    ['expiresAt garbage', '{"version":1,"expiresAt":"tomorrow"}', /^descriptor\.expiresAt: must be an ISO 8601 date-time/],
    ['expiresAt Feb 30', '{"version":1,"expiresAt":"2030-02-30T00:00:00Z"}', /^descriptor\.expiresAt: /],
    ['expiresAt number', '{"version":1,"expiresAt":1893456000}', /^descriptor\.expiresAt: /],
    ['approve string', '{"version":1,"approve":"yes"}', /^descriptor\.approve: must be true or false$/],
    ['label not string', '{"version":1,"label":{"a":1}}', /^descriptor\.label: must be a string$/],
    ['label empty', '{"version":1,"label":""}', /^descriptor\.label: must not be empty/],
    ['label too long', JSON.stringify({ version: 1, label: 'x'.repeat(65) }), /^descriptor\.label: 65 characters; at most 64$/],
    ['label control chars', JSON.stringify({ version: 1, label: 'pc\u001b[2J' }), /^descriptor\.label: contains control/],
    ['label newline', JSON.stringify({ version: 1, label: 'pc\nfake line' }), /^descriptor\.label: contains control/],
    ['label bidi override', JSON.stringify({ version: 1, label: 'pc\u202efdp.exe' }), /^descriptor\.label: contains control/],
    ['label line separator', JSON.stringify({ version: 1, label: 'pc\u2028x' }), /^descriptor\.label: contains control/],
    ['too many rules in one list', JSON.stringify({ version: 1, allow: Array(257).fill('10.0.0.1') }), /^descriptor\.allow: at most 256 rules$/],
    ['too many rules in total', JSON.stringify({ version: 1, allow: Array(200).fill('10.0.0.1'), deny: Array(57).fill('10.0.0.2') }),
      /^descriptor: 257 rules; at most 256/],
    ['invalid UTF-8 buffer', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), /^descriptor: not valid UTF-8$/],
    ['deeply nested JSON', `{"version":1,"label":${'['.repeat(5000)}${']'.repeat(5000)}}`, /^descriptor\.label: must be a string$/],
    ['deeply nested array', `${'['.repeat(8000)}${']'.repeat(8000)}`, /got an array/],
  ];
  test.each(cases)('%s', (_label, input, message) => {
    expect(refusal(input).message).toMatch(message);
  });

  test('huge input is refused before JSON.parse', () => {
    const spy = jest.spyOn(JSON, 'parse');
    try {
      const huge = JSON.stringify({ version: 1, label: 'x', allow: Array(3000).fill('10.0.0.0/8') });
      expect(huge.length).toBeGreaterThan(Limits.descriptorBytes);
      expect(refusal(huge).message).toMatch(/^descriptor: \d+ bytes is over the 16384-byte limit$/);
      expect(refusal(Buffer.from(huge)).message).toMatch(/over the 16384-byte limit/);
      // multi-byte characters count as bytes, not characters
      const wide = JSON.stringify({ version: 1, label: 'é'.repeat(9000) });
      expect(wide.length).toBeLessThan(Limits.descriptorBytes);
      expect(refusal(wide).message).toMatch(/bytes is over the 16384-byte limit/);
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  test('huge, cyclic or unserialisable objects are refused', () => {
    expect(refusal({ version: 1, allow: Array(3000).fill('10.0.0.0/8') }).message).toMatch(/over the 16384-byte limit/);
    const cyclic: Record<string, unknown> = { version: 1 };
    cyclic['self'] = cyclic;
    expect(refusal(cyclic).message).toMatch(/not representable as JSON/);
    expect(refusal(() => 1).message).toMatch(/must be a JSON object/);
  });

  test('prototype pollution does not happen', () => {
    refusal('{"version":1,"__proto__":{"polluted":true}}');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

describe('makeDescriptor', () => {
  test('canonicalises rules and fills defaults', () => {
    const d = makeDescriptor({ label: 'kiosk', allow: ['0x0a.0x14.0.0/16', 'PRINTER.lan:443,80'], deny: ['10.20.0.1/32'], maxHelpers: 2, approve: true });
    expect(d).toEqual({
      version: 1,
      label: 'kiosk',
      allow: ['10.20.0.0/16', 'printer.lan:80,443'],
      deny: ['10.20.0.1'],
      dns: 'remote',
      protocols: ['socks5', 'http'],
      maxHelpers: 2,
      approve: true,
    });
  });

  test('no options means the default policy', () => {
    expect(makeDescriptor({})).toEqual({ version: 1, allow: [], deny: [], dns: 'remote', protocols: ['socks5', 'http'] });
  });

  test('bad options are BRK_BAD_OPTION', () => {
    expect(() => makeDescriptor({ allow: ['10.0.0.0/33'] })).toThrow(expect.objectContaining({ code: 'BRK_BAD_OPTION' }));
    expect(() => makeDescriptor({ maxHelpers: 0 })).toThrow(expect.objectContaining({ code: 'BRK_BAD_OPTION', message: expect.stringMatching(/maxHelpers: must be 1-64/) }));
    expect(() => makeDescriptor({ label: 'a\nb' })).toThrow(/descriptor\.label/);
    expect(() => makeDescriptor({ expiresAt: 'soon' })).toThrow(/descriptor\.expiresAt/);
  });
});

describe('descriptorPolicy', () => {
  test('enforces the descriptor', () => {
    const p = descriptorPolicy(parseDescriptor(EXAMPLE));
    expect(p.checkDial('10.20.5.5', 22).allowed).toBe(true);
    expect(p.checkDial('10.20.0.1', 22).allowed).toBe(false);
    expect(p.checkDial('127.0.0.1', 8080).allowed).toBe(true);
    expect(p.checkDial('127.0.0.1', 8081).allowed).toBe(false);
  });

  test('empty allow list is the default policy', () => {
    const p = descriptorPolicy(makeDescriptor({}));
    expect(p.isDefault).toBe(true);
    expect(p.checkDial('192.168.1.1', 80).allowed).toBe(true);
    expect(p.checkDial('169.254.169.254', 80).allowed).toBe(false);
  });
});

describe('formatDescriptor', () => {
  test('describes everything a helper needs', () => {
    const text = formatDescriptor(parseDescriptor({ ...EXAMPLE, approve: true }));
    expect(text.split('\n')).toEqual([
      'device: front-desk-pc',
      'may reach:',
      '    10.20.0.0/16 (any port)',
      '    printer.lan (ports 80,443)',
      '    127.0.0.1 (port 8080)',
      'denied:',
      '    10.20.0.1 (any port)',
      'never: loopback, link-local, cloud metadata, multicast, unspecified or broadcast addresses unless the allow list names the address',
      'dns: names resolve on the device',
      'protocols: socks5, http',
      'max helpers: 4',
      'expires: 2030-01-01T12:00:00Z',
      'approval: the device approves each helper before it can connect',
    ]);
  });

  test('default policy and missing optionals', () => {
    const text = formatDescriptor(makeDescriptor({}));
    expect(text).toMatch(/^device: \(no label\)$/m);
    expect(text).toMatch(/^may reach: private ranges \(default\): 10\.0\.0\.0\/8, 172\.16\.0\.0\/12, 192\.168\.0\.0\/16, fc00::\/7 \(any port\)$/m);
    expect(text).not.toMatch(/^denied:/m);
    expect(text).toMatch(/^max helpers: not limited by the device$/m);
    expect(text).not.toMatch(/approval/);
  });

  test('hostile text in an unvalidated descriptor is escaped', () => {
    const d = { version: 1, label: 'x\u001b[2J', allow: ['evil\nrule'], deny: [], dns: 'remote', protocols: ['socks5'] } as Descriptor;
    const text = formatDescriptor(d);
    expect(text).not.toMatch(/\u001b/);
    expect(text).toContain('evil\\x0arule (invalid rule, ignored)');
  });
});

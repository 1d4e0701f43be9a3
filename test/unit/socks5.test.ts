import ipaddr from 'ipaddr.js';
import { BrokerError } from '../../src/errors';
import { makeTarget, type Target } from '../../src/protocol/target';
import {
  type Parse,
  SocksProtocolError,
  encodeGreeting,
  encodeMethodSelection,
  encodeReply,
  encodeRequest,
  formatIPv6,
  parseGreeting,
  parseIPv6,
  parseMethodSelection,
  parseReply,
  parseRequest,
} from '../../src/protocol/socks5';

const b = (...bytes: number[]): Buffer => Buffer.from(bytes);
const hexBuf = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const port = (p: number): number[] => [p >> 8, p & 0xff];
const domainReq = (name: string | Buffer, p = 443, cmd = 1): Buffer => {
  const n = typeof name === 'string' ? Buffer.from(name, 'latin1') : name;
  return Buffer.concat([b(5, cmd, 0, 3, n.length), n, b(...port(p))]);
};

function expectOk<T>(r: Parse<T>): { state: 'ok'; consumed: number } & T {
  if (r.state !== 'ok') throw new Error(`expected ok, got ${r.state}${r.state === 'error' ? `: ${r.error.message}` : ''}`);
  return r;
}
function expectError<T>(r: Parse<T>): { state: 'error'; error: BrokerError; reply?: Buffer } {
  if (r.state !== 'error') throw new Error(`expected error, got ${r.state}`);
  return r;
}

/** Every strict prefix is need-more; the full buffer (and with trailing bytes) parses with consumed = length. */
function checkSplits<T>(parse: (buf: Buffer) => Parse<T>, msg: Buffer): void {
  for (let i = 0; i < msg.length; i++) {
    expect({ i, r: parse(msg.subarray(0, i)) }).toEqual({ i, r: { state: 'need-more' } });
  }
  expect(expectOk(parse(msg)).consumed).toBe(msg.length);
  const trailing = Buffer.concat([msg, b(0xde, 0xad, 0x05, 0x01)]);
  const r = expectOk(parse(trailing));
  expect(r.consumed).toBe(msg.length);
  expect(trailing.subarray(r.consumed)).toEqual(b(0xde, 0xad, 0x05, 0x01));
}

/** Prefixes shorter than `at` are need-more; from `at` on (and with trailing bytes) the same error. */
function checkErrorFrom<T>(parse: (buf: Buffer) => Parse<T>, msg: Buffer, at: number): { error: BrokerError; reply?: Buffer } {
  for (let i = 0; i < at; i++) {
    expect({ i, r: parse(msg.subarray(0, i)) }).toEqual({ i, r: { state: 'need-more' } });
  }
  const first = expectError(parse(msg.subarray(0, at)));
  for (const buf of [msg.subarray(0, at), msg, Buffer.concat([msg, b(1, 2, 3)])]) {
    const e = expectError(parse(buf));
    expect(e.error.code).toBe(first.error.code);
    expect(e.error.message).toBe(first.error.message);
    expect(e.reply).toEqual(first.reply);
  }
  expect(first.error).toBeInstanceOf(BrokerError);
  expect(first.error).toBeInstanceOf(SocksProtocolError);
  expect((first.error as SocksProtocolError).reply).toEqual(first.reply);
  expect(first.error.message).not.toMatch(/\n/);
  return first;
}

describe('greeting', () => {
  const ok: Array<[string, Buffer, number[]]> = [
    ['no auth', b(5, 1, 0), [0]],
    ['curl default', b(5, 2, 0, 1), [0, 1]],
    ['three methods', b(5, 3, 0, 1, 2), [0, 1, 2]],
    ['255 methods', Buffer.concat([b(5, 255), Buffer.alloc(255, 0x80)]), new Array<number>(255).fill(0x80)],
  ];
  test.each(ok)('parses %s at every split point', (_name, msg, methods) => {
    checkSplits(parseGreeting, msg);
    expect(expectOk(parseGreeting(msg)).methods).toEqual(methods);
  });

  test('255 methods needs all 257 bytes', () => {
    const msg = Buffer.concat([b(5, 255), Buffer.alloc(255, 0)]);
    expect(parseGreeting(msg.subarray(0, 256)).state).toBe('need-more');
    expect(expectOk(parseGreeting(msg)).consumed).toBe(257);
  });

  const bad: Array<[string, Buffer, RegExp]> = [
    ['SOCKS4', b(4, 1, 0, 80, 127, 0, 0, 1, 0), /first byte 0x04 is SOCKS4.*socks5h:\/\/ or --socks5-hostname/],
    ['HTTP GET', Buffer.from('GET / HTTP/1.1\r\n'), /^not a SOCKS5 client \(first byte 0x47 looks like HTTP\); use socks5h:\/\/ or --socks5-hostname$/],
    ['HTTP CONNECT', Buffer.from('CONNECT example.com:443 HTTP/1.1\r\n'), /first byte 0x43 looks like HTTP/],
    ['TLS', b(0x16, 3, 1, 0, 0xa5), /first byte 0x16 looks like TLS/],
    ['zero byte', b(0, 1, 0), /first byte 0x00, expected 0x05/],
    ['version 6', b(6, 1, 0), /first byte 0x06, expected 0x05/],
  ];
  test.each(bad)('wrong version: %s => error without reply, from the first byte', (_name, msg, message) => {
    const e = checkErrorFrom(parseGreeting, msg, 1);
    expect(e.error.code).toBe('BRK_BAD_REQUEST');
    expect(e.error.message).toMatch(message);
    expect(e.reply).toBeUndefined();
  });

  test('NMETHODS=0 => error with reply 05 FF', () => {
    const e = checkErrorFrom(parseGreeting, b(5, 0, 5, 1, 0, 1), 2);
    expect(e.error.code).toBe('BRK_BAD_REQUEST');
    expect(e.error.message).toBe('SOCKS greeting: NMETHODS is 0x00 (expected at least one method)');
    expect(e.reply).toEqual(b(5, 0xff));
  });

  test('pipelined greeting + request: consumed splits them', () => {
    const req = encodeRequest(makeTarget('example.com', 443));
    const buf = Buffer.concat([encodeGreeting(), req, Buffer.from('GET /')]);
    const g = expectOk(parseGreeting(buf));
    expect(g.consumed).toBe(3);
    const r = expectOk(parseRequest(buf.subarray(g.consumed)));
    expect(r.target).toEqual({ host: 'example.com', port: 443, kind: 'domain' });
    expect(buf.subarray(g.consumed + r.consumed).toString()).toBe('GET /');
  });

  test('encodeGreeting', () => {
    expect(encodeGreeting()).toEqual(b(5, 1, 0));
    expect(encodeGreeting([0, 2])).toEqual(b(5, 2, 0, 2));
    expect(expectOk(parseGreeting(encodeGreeting([0, 1, 2]))).methods).toEqual([0, 1, 2]);
    expect(() => encodeGreeting([])).toThrow(BrokerError);
    expect(() => encodeGreeting(new Array<number>(256).fill(0))).toThrow(BrokerError);
    expect(() => encodeGreeting([256])).toThrow(BrokerError);
  });
});

describe('method selection', () => {
  test.each([0x00, 0x02, 0xff])('round-trips method 0x%s', (m) => {
    const msg = encodeMethodSelection(m);
    expect(msg).toEqual(b(5, m));
    checkSplits(parseMethodSelection, msg);
    expect(expectOk(parseMethodSelection(msg)).method).toBe(m);
  });

  test('bad version is an error without reply', () => {
    const e = checkErrorFrom(parseMethodSelection, b(4, 0), 1);
    expect(e.error.message).toBe('SOCKS method selection: bad version 0x04 (expected 0x05)');
    expect(e.reply).toBeUndefined();
  });

  test('encodeMethodSelection rejects non-bytes', () => {
    expect(() => encodeMethodSelection(-1)).toThrow(BrokerError);
    expect(() => encodeMethodSelection(256)).toThrow(BrokerError);
  });
});

describe('request', () => {
  const ok: Array<[string, Buffer, number, Target]> = [
    ['IPv4 CONNECT', b(5, 1, 0, 1, 127, 0, 0, 1, 0, 80), 1, { host: '127.0.0.1', port: 80, kind: 'ipv4' }],
    ['IPv4 port 65535', b(5, 1, 0, 1, 10, 20, 30, 40, 0xff, 0xff), 1, { host: '10.20.30.40', port: 65535, kind: 'ipv4' }],
    ['IPv6 loopback', Buffer.concat([b(5, 1, 0, 4), hexBuf('00000000000000000000000000000001'), b(1, 0xbb)]), 1, { host: '::1', port: 443, kind: 'ipv6' }],
    ['IPv6 compressed', Buffer.concat([b(5, 1, 0, 4), hexBuf('20010db8 00000000 00010000 00000001'), b(0, 22)]), 1, { host: '2001:db8::1:0:0:1', port: 22, kind: 'ipv6' }],
    ['IPv6 no zeros', Buffer.concat([b(5, 1, 0, 4), hexBuf('20010DB8 ABCD0012 00340056 0078009A'), b(0, 22)]), 1, { host: '2001:db8:abcd:12:34:56:78:9a', port: 22, kind: 'ipv6' }],
    ['IPv6 v4-mapped', Buffer.concat([b(5, 1, 0, 4), hexBuf('00000000 00000000 0000ffff c0a80001'), b(0, 80)]), 1, { host: '::ffff:192.168.0.1', port: 80, kind: 'ipv6' }],
    ['domain', domainReq('example.com'), 1, { host: 'example.com', port: 443, kind: 'domain' }],
    ['domain, upper case, trailing dot', domainReq('WWW.Example.COM.', 8080), 1, { host: 'www.example.com', port: 8080, kind: 'domain' }],
    ['domain holding an IPv4 literal', domainReq('10.0.0.1', 80), 1, { host: '10.0.0.1', port: 80, kind: 'ipv4' }],
    ['domain holding an IPv6 literal', domainReq('::1', 80), 1, { host: '::1', port: 80, kind: 'ipv6' }],
    ['single-label domain', domainReq('printer', 631), 1, { host: 'printer', port: 631, kind: 'domain' }],
    ['253-byte domain', domainReq(`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`), 1,
      { host: `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`, port: 443, kind: 'domain' }],
    ['non-zero RSV tolerated', b(5, 1, 0x7f, 1, 1, 1, 1, 1, 0, 53), 1, { host: '1.1.1.1', port: 53, kind: 'ipv4' }],
    ['BIND', b(5, 2, 0, 1, 10, 0, 0, 1, 0x1f, 0x90), 2, { host: '10.0.0.1', port: 8080, kind: 'ipv4' }],
    ['UDP ASSOCIATE with all zeros (RFC 1928 s7)', b(5, 3, 0, 1, 0, 0, 0, 0, 0, 0), 3, { host: '0.0.0.0', port: 0, kind: 'ipv4' }],
    ['UDP ASSOCIATE domain port 0', domainReq('example.com', 0, 3), 3, { host: 'example.com', port: 0, kind: 'domain' }],
  ];
  test.each(ok)('parses %s at every split point', (_name, msg, command, target) => {
    checkSplits(parseRequest, msg);
    const r = expectOk(parseRequest(msg));
    expect(r.command).toBe(command);
    expect(r.target).toEqual(target);
  });

  interface Bad {
    name: string;
    msg: Buffer;
    at: number; // shortest prefix that is already an error
    code: string;
    rep: number;
    message: RegExp | string;
  }
  const v6 = (n: number): Buffer => Buffer.concat([b(5, 1, 0, 4), Buffer.alloc(n, 0)]);
  const bad: Bad[] = [
    { name: 'version 4', msg: b(4, 1, 0, 1, 1, 2, 3, 4, 0, 80), at: 1, code: 'BRK_BAD_REQUEST', rep: 0x01, message: 'SOCKS request: bad version 0x04 (expected 0x05)' },
    { name: 'unknown CMD 0x00', msg: b(5, 0, 0, 1, 1, 2, 3, 4, 0, 80), at: 2, code: 'BRK_UNSUPPORTED', rep: 0x07, message: 'SOCKS request: unknown command 0x00 (expected 1 CONNECT, 2 BIND or 3 UDP ASSOCIATE)' },
    { name: 'unknown CMD 0x04', msg: b(5, 4, 0, 1, 1, 2, 3, 4, 0, 80), at: 2, code: 'BRK_UNSUPPORTED', rep: 0x07, message: /unknown command 0x04/ },
    { name: 'unknown CMD 0xff', msg: b(5, 0xff, 0, 1, 1, 2, 3, 4, 0, 80), at: 2, code: 'BRK_UNSUPPORTED', rep: 0x07, message: /unknown command 0xff/ },
    { name: 'unknown ATYP 0x05', msg: b(5, 1, 0, 5, 1, 2, 3, 4, 0, 80), at: 4, code: 'BRK_BAD_TARGET', rep: 0x08, message: 'SOCKS request: unknown address type 0x05 (expected 1, 3 or 4)' },
    { name: 'unknown ATYP 0x00', msg: b(5, 1, 0, 0, 1, 2, 3, 4, 0, 80), at: 4, code: 'BRK_BAD_TARGET', rep: 0x08, message: /unknown address type 0x00/ },
    { name: 'ATYP 0x02', msg: b(5, 1, 0, 2), at: 4, code: 'BRK_BAD_TARGET', rep: 0x08, message: /unknown address type 0x02/ },
    { name: 'zero-length domain', msg: b(5, 1, 0, 3, 0, 0, 80), at: 5, code: 'BRK_BAD_TARGET', rep: 0x01, message: 'SOCKS request: domain name length is 0x00 (expected 1-255)' },
    { name: 'domain with NUL', msg: domainReq('evil.com\0.example.com'), at: 5 + 21, code: 'BRK_BAD_TARGET', rep: 0x01, message: 'SOCKS request: bad domain name "evil.com\\x00.example.com" (byte 0x00 at offset 8)' },
    { name: 'domain with CRLF', msg: domainReq('a.com\r\nX-Forged: 1'), at: 5 + 18, code: 'BRK_BAD_TARGET', rep: 0x01, message: /bad domain name "a\.com\\x0d\\x0aX-Forged: 1" \(byte 0x0d at offset 5\)/ },
    { name: 'domain with space', msg: domainReq('a b.com'), at: 5 + 7, code: 'BRK_BAD_TARGET', rep: 0x01, message: /byte 0x20 at offset 1/ },
    { name: 'domain with DEL', msg: domainReq('a\x7f.com'), at: 5 + 6, code: 'BRK_BAD_TARGET', rep: 0x01, message: /byte 0x7f at offset 1/ },
    { name: 'domain with UTF-8', msg: domainReq(Buffer.from('bücher.de')), at: 5 + 10, code: 'BRK_BAD_TARGET', rep: 0x01, message: /"b\\xc3\\xbccher\.de" \(byte 0xc3 at offset 1\)/ },
    { name: 'domain with ESC sequence', msg: domainReq('\x1b[2J'), at: 5 + 4, code: 'BRK_BAD_TARGET', rep: 0x01, message: /"\\x1b\[2J"/ },
    { name: 'domain with bad label', msg: domainReq('-bad-.com'), at: 5 + 9, code: 'BRK_BAD_TARGET', rep: 0x01, message: 'SOCKS request: bad domain name "-bad-.com" (not a valid DNS name or IP address)' },
    { name: 'domain of dots', msg: domainReq('..'), at: 5 + 2, code: 'BRK_BAD_TARGET', rep: 0x01, message: /not a valid DNS name/ },
    { name: '255-byte domain', msg: domainReq(`${'a'.repeat(63)}.`.repeat(4).slice(0, 255)), at: 5 + 255, code: 'BRK_BAD_TARGET', rep: 0x01, message: /not a valid DNS name/ },
    { name: 'CONNECT to IPv4 port 0', msg: b(5, 1, 0, 1, 1, 2, 3, 4, 0, 0), at: 10, code: 'BRK_BAD_TARGET', rep: 0x01, message: 'SOCKS request: destination port is 0 (expected 1-65535)' },
    { name: 'CONNECT to IPv6 port 0', msg: Buffer.concat([v6(16), b(0, 0)]), at: 22, code: 'BRK_BAD_TARGET', rep: 0x01, message: /port is 0/ },
    { name: 'CONNECT to domain port 0', msg: domainReq('example.com', 0), at: 5 + 11 + 2, code: 'BRK_BAD_TARGET', rep: 0x01, message: /port is 0/ },
    { name: 'bad domain wins over port 0', msg: domainReq('a\0', 0), at: 5 + 2, code: 'BRK_BAD_TARGET', rep: 0x01, message: /bad domain name/ },
  ];
  test.each(bad)('hostile: $name => reply byte $rep', ({ msg, at, code, rep, message }) => {
    const e = checkErrorFrom(parseRequest, msg, at);
    expect(e.error.code).toBe(code);
    if (typeof message === 'string') expect(e.error.message).toBe(message);
    else expect(e.error.message).toMatch(message);
    expect(e.reply).toEqual(encodeReply(rep));
    expect(e.reply).toEqual(b(5, rep, 0, 1, 0, 0, 0, 0, 0, 0));
  });

  test('truncated IPv6 is need-more at every length, never a misparse', () => {
    for (let n = 0; n < 18; n++) expect(parseRequest(v6(n)).state).toBe('need-more');
    expect(parseRequest(Buffer.concat([v6(16), b(0)])).state).toBe('need-more');
  });

  test('a short IPv4 request does not borrow bytes from the next message', () => {
    // 05 01 00 01 + only 3 address bytes: incomplete, even though bytes follow in a later chunk.
    expect(parseRequest(b(5, 1, 0, 1, 1, 2, 3)).state).toBe('need-more');
  });

  test('two pipelined requests parse one after the other', () => {
    const a = encodeRequest(makeTarget('10.0.0.1', 80));
    const c = encodeRequest(makeTarget('example.org', 443));
    const buf = Buffer.concat([a, c]);
    const r1 = expectOk(parseRequest(buf));
    expect(r1.consumed).toBe(a.length);
    const r2 = expectOk(parseRequest(buf.subarray(r1.consumed)));
    expect(r2.consumed).toBe(c.length);
    expect(r2.target.host).toBe('example.org');
  });

  test('does not modify or retain the input buffer', () => {
    const msg = domainReq('example.com');
    const copy = Buffer.from(msg);
    const r = expectOk(parseRequest(msg));
    msg.fill(0);
    expect(r.target.host).toBe('example.com');
    expect(copy).toEqual(domainReq('example.com'));
  });
});

describe('encodeRequest', () => {
  const cases: Array<[string, Target, number, Buffer]> = [
    ['IPv4', makeTarget('192.168.1.2', 80), 1, b(5, 1, 0, 1, 192, 168, 1, 2, 0, 80)],
    ['IPv6', makeTarget('[2001:db8::1]', 443), 1, Buffer.concat([b(5, 1, 0, 4), hexBuf('20010db8000000000000000000000001'), b(1, 0xbb)])],
    ['IPv6 mixed notation', makeTarget('::ffff:10.1.2.3', 80), 1, Buffer.concat([b(5, 1, 0, 4), hexBuf('00000000000000000000ffff0a010203'), b(0, 80)])],
    ['domain', makeTarget('Example.com', 443), 1, Buffer.concat([b(5, 1, 0, 3, 11), Buffer.from('example.com'), b(1, 0xbb)])],
    ['UDP ASSOCIATE port 0', { host: '0.0.0.0', port: 0, kind: 'ipv4' }, 3, b(5, 3, 0, 1, 0, 0, 0, 0, 0, 0)],
  ];
  test.each(cases)('%s', (_name, target, cmd, expected) => {
    const enc = encodeRequest(target, cmd);
    expect(enc).toEqual(expected);
    const r = expectOk(parseRequest(enc));
    expect(r).toEqual({ state: 'ok', consumed: enc.length, command: cmd, target });
  });

  test('default command is CONNECT', () => {
    expect(encodeRequest(makeTarget('1.2.3.4', 5))[1]).toBe(1);
  });

  test.each([
    ['domain over 255 bytes', { host: 'a'.repeat(256), port: 80, kind: 'domain' } as Target],
    ['empty domain', { host: '', port: 80, kind: 'domain' } as Target],
    ['IPv6 zone index', { host: 'fe80::1%eth0', port: 80, kind: 'ipv6' } as Target],
    ['kind ipv4 but not IPv4', { host: 'example.com', port: 80, kind: 'ipv4' } as Target],
    ['kind ipv6 but IPv4', { host: '1.2.3.4', port: 80, kind: 'ipv6' } as Target],
    ['CONNECT port 0', { host: '1.2.3.4', port: 0, kind: 'ipv4' } as Target],
    ['port 65536', { host: '1.2.3.4', port: 65536, kind: 'ipv4' } as Target],
    ['fractional port', { host: '1.2.3.4', port: 80.5, kind: 'ipv4' } as Target],
  ])('refuses %s with BRK_BAD_TARGET', (_name, target) => {
    expect(() => encodeRequest(target)).toThrow(expect.objectContaining({ code: 'BRK_BAD_TARGET' }));
  });

  test('round-trips many targets', () => {
    const hosts = ['1.2.3.4', '255.255.255.255', '0.0.0.0', '::', '::1', '1::', 'fe80::1:2', '2001:db8:0:1:1:1:1:1',
      '2001:0:0:1::1', 'a.b.c', 'x'.repeat(63), 'xn--bcher-kva.de', 'under_score.local'];
    for (const h of hosts) {
      for (const p of [1, 80, 443, 65535]) {
        const t = makeTarget(h, p);
        expect(expectOk(parseRequest(encodeRequest(t))).target).toEqual(t);
      }
    }
  });
});

describe('reply', () => {
  const cases: Array<[string, number, { host: string; port: number } | undefined, Buffer, { host: string; port: number }]> = [
    ['default bound', 0, undefined, b(5, 0, 0, 1, 0, 0, 0, 0, 0, 0), { host: '0.0.0.0', port: 0 }],
    ['IPv4 bound', 0, { host: '10.0.0.5', port: 40000 }, b(5, 0, 0, 1, 10, 0, 0, 5, 0x9c, 0x40), { host: '10.0.0.5', port: 40000 }],
    ['IPv6 bound', 0, { host: '2001:db8::5', port: 1 }, Buffer.concat([b(5, 0, 0, 4), hexBuf('20010db8000000000000000000000005'), b(0, 1)]), { host: '2001:db8::5', port: 1 }],
    ['bracketed IPv6 bound', 5, { host: '[::1]', port: 2 }, Buffer.concat([b(5, 5, 0, 4), hexBuf('00000000000000000000000000000001'), b(0, 2)]), { host: '::1', port: 2 }],
    ['domain bound', 0, { host: 'proxy.example', port: 1080 }, Buffer.concat([b(5, 0, 0, 3, 13), Buffer.from('proxy.example'), b(4, 0x38)]), { host: 'proxy.example', port: 1080 }],
    ['refused', 0x05, undefined, b(5, 5, 0, 1, 0, 0, 0, 0, 0, 0), { host: '0.0.0.0', port: 0 }],
    ['unassigned rep 0x09', 0x09, undefined, b(5, 9, 0, 1, 0, 0, 0, 0, 0, 0), { host: '0.0.0.0', port: 0 }],
  ];
  test.each(cases)('%s: encode, parse at every split point', (_name, rep, bound, wire, parsedBound) => {
    const enc = encodeReply(rep, bound);
    expect(enc).toEqual(wire);
    checkSplits(parseReply, enc);
    expect(expectOk(parseReply(enc))).toEqual({ state: 'ok', consumed: wire.length, rep, bound: parsedBound });
  });

  test.each([0, 1, 2, 3, 4, 5, 6, 7, 8])('REP 0x0%s is relayed exactly', (rep) => {
    expect(expectOk(parseReply(encodeReply(rep))).rep).toBe(rep);
  });

  test('replies without a bound address are built once but each caller gets its own copy', () => {
    const first = encodeReply(0x05);
    first.fill(0);
    expect(encodeReply(0x05)).toEqual(b(5, 5, 0, 1, 0, 0, 0, 0, 0, 0));
    expect(encodeReply(0x05)).not.toBe(encodeReply(0x05));
    expect(() => encodeReply(256)).toThrow(/not a byte/);
  });

  test('bound domain is not validated (informational), even empty', () => {
    const r = expectOk(parseReply(b(5, 0, 0, 3, 0, 0, 80)));
    expect(r.bound).toEqual({ host: '', port: 80 });
    expect(r.consumed).toBe(7);
    expect(encodeReply(0, r.bound)).toEqual(b(5, 0, 0, 3, 0, 0, 80));
  });

  test('non-zero RSV tolerated', () => {
    expect(expectOk(parseReply(b(5, 0, 9, 1, 1, 2, 3, 4, 0, 80))).bound).toEqual({ host: '1.2.3.4', port: 80 });
  });

  test('bad version => error without reply', () => {
    const e = checkErrorFrom(parseReply, b(4, 0x5a, 0, 0, 0, 0, 0, 0), 1);
    expect(e.error.code).toBe('BRK_INTERNAL');
    expect(e.error.message).toBe('SOCKS reply: bad version 0x04 (expected 0x05)');
    expect(e.reply).toBeUndefined();
  });

  test('unknown ATYP => error without reply', () => {
    const e = checkErrorFrom(parseReply, b(5, 0, 0, 7, 1, 2, 3, 4, 0, 80), 4);
    expect(e.error.message).toBe('SOCKS reply: unknown address type 0x07 (expected 1, 3 or 4)');
    expect(e.reply).toBeUndefined();
  });

  test('truncated IPv6 reply is need-more', () => {
    const enc = encodeReply(0, { host: 'fe80::1', port: 9 });
    for (let i = 0; i < enc.length; i++) expect(parseReply(enc.subarray(0, i)).state).toBe('need-more');
  });

  test('reply followed by payload: consumed leaves the payload', () => {
    const buf = Buffer.concat([encodeReply(0, { host: '::1', port: 5 }), Buffer.from('HTTP/1.1 200 OK')]);
    const r = expectOk(parseReply(buf));
    expect(buf.subarray(r.consumed).toString()).toBe('HTTP/1.1 200 OK');
  });

  test('encodeReply refuses bad input', () => {
    expect(() => encodeReply(256)).toThrow(BrokerError);
    expect(() => encodeReply(-1)).toThrow(BrokerError);
    expect(() => encodeReply(0, { host: '1.2.3.4', port: 70000 })).toThrow(BrokerError);
    expect(() => encodeReply(0, { host: 'x'.repeat(256), port: 1 })).toThrow(BrokerError);
    expect(() => encodeReply(0, { host: 'fe80::1%eth0', port: 1 })).toThrow(BrokerError);
  });
});

describe('IPv6 text form (RFC 5952)', () => {
  const cases: Array<[string, string]> = [
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['00010000000000000000000000000000', '1::'],
    ['20010db8000000000000000000000001', '2001:db8::1'],
    ['20010db8000000010000000000000001', '2001:db8:0:1::1'], // longest run
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'], // first of equal runs
    ['20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'], // single zero group not compressed
    ['FE800000000000000000000000ABCDEF', 'fe80::ab:cdef'],
    ['00000000000000000000ffff7f000001', '::ffff:127.0.0.1'],
    ['0000000000000000000000007f000001', '::7f00:1'], // deprecated IPv4-compatible: plain hex
  ];
  test.each(cases)('%s => %s', (hex, text) => {
    expect(formatIPv6(hexBuf(hex))).toBe(text);
    expect(parseIPv6(text)).toEqual(hexBuf(hex));
  });

  test('matches ipaddr.js on 2000 pseudo-random addresses with zero runs', () => {
    let seed = 12345; // mulberry32: deterministic, good low bits
    const rnd = (n: number): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    let ties = 0;
    for (let k = 0; k < 2000; k++) {
      const bytes = Buffer.alloc(16);
      for (let g = 0; g < 8; g++) {
        const kind = rnd(4);
        const v = kind < 2 ? 0 : kind === 2 ? rnd(16) : rnd(65536);
        bytes.writeUInt16BE(v, g * 2);
      }
      if (bytes.subarray(0, 10).every((x) => x === 0) && bytes.readUInt16BE(10) === 0xffff) continue;
      const runs = (Array.from({ length: 8 }, (_, g) => (bytes.readUInt16BE(g * 2) === 0 ? '0' : 'x')).join('').match(/00+/g) ?? []).map((r) => r.length);
      if (runs.filter((r) => r === Math.max(...runs)).length > 1) ties++;
      const addr = new ipaddr.IPv6(Array.from({ length: 8 }, (_, g) => bytes.readUInt16BE(g * 2)));
      const expected = addr.toRFC5952String();
      expect(formatIPv6(bytes)).toBe(expected);
      expect(parseIPv6(expected)).toEqual(bytes);
      expect(parseIPv6(addr.toNormalizedString())).toEqual(bytes);
    }
    expect(ties).toBeGreaterThan(20); // the sample really exercises the tie-break rule
  });

  test('parseIPv6 refuses non-IPv6', () => {
    expect(parseIPv6('1.2.3.4')).toBeUndefined();
    expect(parseIPv6('fe80::1%eth0')).toBeUndefined();
    expect(parseIPv6('example.com')).toBeUndefined();
    expect(parseIPv6('[::1]')).toEqual(hexBuf('00000000000000000000000000000001'));
  });
});

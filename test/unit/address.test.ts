import { cidrContains, classifyIp, isSensitive, normalizeIp, sensitiveRange, type IpClass } from '../../src/policy/address';
import { BrokerError } from '../../src/errors';

describe('normalizeIp', () => {
  const cases: Array<[string, string | null]> = [
    ['127.0.0.1', '127.0.0.1'],
    ['10.20.0.5', '10.20.0.5'],
    // legacy inet_aton forms that getaddrinfo accepts
    ['0x7f.1', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['0x7f000001', '127.0.0.1'],
    ['0x7F.0x0.0.1', '127.0.0.1'],
    ['127.000.000.001', '127.0.0.1'],
    ['0', '0.0.0.0'],
    ['1.256', '1.0.1.0'],
    ['0xffffffff', '255.255.255.255'],
    // cross-checked against glibc inet_aton
    ['0X7F.1', '127.0.0.1'],
    ['017700000001', '127.0.0.1'],
    ['127.0.0.0x1', '127.0.0.1'],
    ['1.2.3.0377', '1.2.3.255'],
    ['0xAbC', '0.0.10.188'],
    ['00x7f.1', null],
    ['0x', null],
    ['1.0x', null],
    // IPv6
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['[::]', '::'],
    ['FD00:0:0:0:0:0:0:1', 'fd00::1'],
    ['2001:DB8::0:1', '2001:db8::1'],
    // IPv4 inside IPv6
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::ffff:7f00:1', '127.0.0.1'],
    ['[::ffff:7f00:1]', '127.0.0.1'],
    ['0:0:0:0:0:ffff:a14:5', '10.20.0.5'],
    ['::7f00:1', '127.0.0.1'], // IPv4-compatible
    ['::127.0.0.1', '127.0.0.1'],
    // zone ids
    ['fe80::1%eth0', 'fe80::1'],
    ['fe80::1%25eth0', 'fe80::1'],
    ['[fe80::1%eth0]', 'fe80::1'],
    // not IPs
    ['', null],
    ['printer.lan', null],
    ['localhost', null],
    ['127.0.0.1 ', null],
    [' 127.0.0.1', null],
    ['127.0.0.1.', null],
    ['127.0.0.1\n', null],
    ['1.2.3.4.5', null],
    ['256.0.0.1', null],
    ['08.0.0.1', null],
    ['4294967296', null],
    ['0x100000000', null],
    ['[127.0.0.1]', null],
    ['127.0.0.1%eth0', null],
    ['fe80::1%', null],
    ['fe80::1%eth 0', null],
    ['::1/128', null],
    ['cafe', null],
    ['١٢٧.0.0.1', null],
    ['x'.repeat(10000), null],
  ];
  test.each(cases)('normalizeIp(%j) = %j', (input, expected) => {
    expect(normalizeIp(input)).toBe(expected);
  });

  test('non-string input is not an IP', () => {
    expect(normalizeIp(undefined as unknown as string)).toBeNull();
    expect(normalizeIp(2130706433 as unknown as string)).toBeNull();
  });
});

describe('classifyIp / isSensitive', () => {
  const cases: Array<[string, IpClass, boolean]> = [
    ['127.0.0.1', 'loopback', true],
    ['127.255.255.254', 'loopback', true],
    ['0x7f.1', 'loopback', true],
    ['2130706433', 'loopback', true],
    ['::ffff:127.0.0.1', 'loopback', true],
    ['::1', 'loopback', true],
    ['0.0.0.0', 'unspecified', true],
    ['0.1.2.3', 'unspecified', true],
    ['::', 'unspecified', true],
    ['[::]', 'unspecified', true],
    ['169.254.1.1', 'link-local', true],
    ['fe80::1', 'link-local', true],
    ['febf::1', 'link-local', true],
    ['169.254.169.254', 'metadata', true],
    ['::ffff:169.254.169.254', 'metadata', true],
    ['100.100.100.200', 'metadata', true],
    ['fd00:ec2::254', 'metadata', true],
    ['224.0.0.1', 'multicast', true],
    ['239.255.255.250', 'multicast', true],
    ['ff02::1', 'multicast', true],
    ['255.255.255.255', 'broadcast', true],
    ['10.1.2.3', 'private', false],
    ['172.16.0.1', 'private', false],
    ['172.31.255.255', 'private', false],
    ['192.168.1.1', 'private', false],
    ['fd00::1', 'private', false],
    ['fc00::1', 'private', false],
    ['172.32.0.1', 'public', false],
    ['8.8.8.8', 'public', false],
    ['2606:4700::1111', 'public', false],
    ['198.18.0.1', 'reserved', false],
    ['100.64.0.1', 'reserved', false],
    // NAT64 / SIIT images of sensitive IPv4 addresses are sensitive too
    ['64:ff9b::7f00:1', 'loopback', true],
    ['64:ff9b::a9fe:a9fe', 'metadata', true],
    ['::ffff:0:7f00:1', 'loopback', true],
    ['64:ff9b::808:808', 'public', false],
  ];
  test.each(cases)('%s is %s (sensitive=%s)', (ip, cls, sensitive) => {
    expect(classifyIp(ip)).toBe(cls);
    expect(isSensitive(ip)).toBe(sensitive);
  });

  test('classifyIp refuses non-IPs with BRK_BAD_TARGET', () => {
    expect(() => classifyIp('localhost')).toThrow(BrokerError);
    expect(() => classifyIp('localhost')).toThrow(/not an IP address/);
  });

  test('isSensitive fails closed on non-IPs', () => {
    expect(isSensitive('localhost')).toBe(true);
    expect(isSensitive('')).toBe(true);
  });

  test('sensitiveRange reports the narrowest range', () => {
    expect(sensitiveRange('169.254.169.254')).toEqual({ class: 'metadata', family: 4, network: '169.254.169.254', prefix: 32 });
    expect(sensitiveRange('169.254.3.4')).toEqual({ class: 'link-local', family: 4, network: '169.254.0.0', prefix: 16 });
    expect(sensitiveRange('127.9.9.9')).toEqual({ class: 'loopback', family: 4, network: '127.0.0.0', prefix: 8 });
    expect(sensitiveRange('64:ff9b::7f00:1')).toEqual({ class: 'loopback', family: 6, network: '64:ff9b::7f00:0', prefix: 104 });
    expect(sensitiveRange('10.0.0.1')).toBeNull();
  });
});

describe('cidrContains', () => {
  const cases: Array<[4 | 6, string, number, string, boolean]> = [
    [4, '10.20.0.0', 16, '10.20.5.6', true],
    [4, '10.20.0.0', 16, '10.21.0.1', false],
    [4, '10.20.0.0', 16, '::ffff:10.20.0.1', true],
    [4, '127.0.0.1', 32, '0x7f.1', true],
    [4, '0.0.0.0', 0, '8.8.8.8', true],
    [4, '0.0.0.0', 0, 'fd00::1', false],
    [6, 'fd00::', 8, 'fd12::1', true],
    [6, 'fd00::', 8, '10.0.0.1', false],
    [6, '::', 0, '10.0.0.1', true], // IPv4 is contained via its mapped form
    [6, '::ffff:0:0', 96, '10.0.0.1', true],
    [6, 'fe80::', 10, 'fe80::1%eth0', true],
    [4, '10.0.0.0', 8, 'not-an-ip', false],
  ];
  test.each(cases)('IPv%s %s/%s contains %s: %s', (family, net, prefix, ip, expected) => {
    expect(cidrContains(family, net, prefix, ip)).toBe(expected);
  });
});

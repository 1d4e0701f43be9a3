import { BrokerError } from '../../src/errors';
import { describePorts, formatRule, parseRule, portMatches, type PortRange, type RuleHost } from '../../src/policy/rules';

describe('parseRule: valid forms', () => {
  const cases: Array<[string, RuleHost, PortRange[] | null, string]> = [
    ['10.20.0.0/16', { kind: 'cidr', family: 4, network: '10.20.0.0', prefix: 16 }, null, '10.20.0.0/16'],
    ['10.20.1.5/16', { kind: 'cidr', family: 4, network: '10.20.0.0', prefix: 16 }, null, '10.20.0.0/16'],
    ['10.0.0.1', { kind: 'cidr', family: 4, network: '10.0.0.1', prefix: 32 }, null, '10.0.0.1'],
    ['10.0.0.1/32', { kind: 'cidr', family: 4, network: '10.0.0.1', prefix: 32 }, null, '10.0.0.1'],
    ['0.0.0.0/0', { kind: 'cidr', family: 4, network: '0.0.0.0', prefix: 0 }, null, '0.0.0.0/0'],
    ['127.0.0.1:8080', { kind: 'cidr', family: 4, network: '127.0.0.1', prefix: 32 }, [{ from: 8080, to: 8080 }], '127.0.0.1:8080'],
    ['0x7f.1:80', { kind: 'cidr', family: 4, network: '127.0.0.1', prefix: 32 }, [{ from: 80, to: 80 }], '127.0.0.1:80'],
    ['2130706433', { kind: 'cidr', family: 4, network: '127.0.0.1', prefix: 32 }, null, '127.0.0.1'],
    ['0177.0.0.0/8', { kind: 'cidr', family: 4, network: '127.0.0.0', prefix: 8 }, null, '127.0.0.0/8'],
    ['fd00::/8', { kind: 'cidr', family: 6, network: 'fd00::', prefix: 8 }, null, 'fd00::/8'],
    ['fd12:3456::7/8', { kind: 'cidr', family: 6, network: 'fd00::', prefix: 8 }, null, 'fd00::/8'],
    ['fd00::1', { kind: 'cidr', family: 6, network: 'fd00::1', prefix: 128 }, null, 'fd00::1'],
    ['FD00::1', { kind: 'cidr', family: 6, network: 'fd00::1', prefix: 128 }, null, 'fd00::1'],
    ['[fd00::1]:22', { kind: 'cidr', family: 6, network: 'fd00::1', prefix: 128 }, [{ from: 22, to: 22 }], '[fd00::1]:22'],
    ['[fd00::/8]:443', { kind: 'cidr', family: 6, network: 'fd00::', prefix: 8 }, [{ from: 443, to: 443 }], '[fd00::/8]:443'],
    ['[fd00::1]', { kind: 'cidr', family: 6, network: 'fd00::1', prefix: 128 }, null, 'fd00::1'],
    // without brackets the last group is part of the address, never a port
    ['fd00::1:22', { kind: 'cidr', family: 6, network: 'fd00::1:22', prefix: 128 }, null, 'fd00::1:22'],
    ['::/0', { kind: 'cidr', family: 6, network: '::', prefix: 0 }, null, '::/0'],
    ['[::ffff:10.0.0.1]:22', { kind: 'cidr', family: 4, network: '10.0.0.1', prefix: 32 }, [{ from: 22, to: 22 }], '10.0.0.1:22'],
    ['::ffff:10.0.0.0/104', { kind: 'cidr', family: 4, network: '10.0.0.0', prefix: 8 }, null, '10.0.0.0/8'],
    ['fe80::1%eth0', { kind: 'cidr', family: 6, network: 'fe80::1', prefix: 128 }, null, 'fe80::1'],
    ['printer.lan', { kind: 'host', name: 'printer.lan' }, null, 'printer.lan'],
    ['Printer.LAN.', { kind: 'host', name: 'printer.lan' }, null, 'printer.lan'],
    ['printer.lan:80,443', { kind: 'host', name: 'printer.lan' }, [{ from: 80, to: 80 }, { from: 443, to: 443 }], 'printer.lan:80,443'],
    ['printer.lan:443,80', { kind: 'host', name: 'printer.lan' }, [{ from: 80, to: 80 }, { from: 443, to: 443 }], 'printer.lan:80,443'],
    ['nas:8000-8100', { kind: 'host', name: 'nas' }, [{ from: 8000, to: 8100 }], 'nas:8000-8100'],
    ['nas:80,8000-8100', { kind: 'host', name: 'nas' }, [{ from: 80, to: 80 }, { from: 8000, to: 8100 }], 'nas:80,8000-8100'],
    ['nas:8050,8000-8100,22', { kind: 'host', name: 'nas' }, [{ from: 22, to: 22 }, { from: 8000, to: 8100 }], 'nas:22,8000-8100'],
    ['_srv.my-host.example', { kind: 'host', name: '_srv.my-host.example' }, null, '_srv.my-host.example'],
    ['localhost', { kind: 'host', name: 'localhost' }, null, 'localhost'],
    ['*.corp.example', { kind: 'suffix', suffix: 'corp.example' }, null, '*.corp.example'],
    ['*.Corp.Example:443', { kind: 'suffix', suffix: 'corp.example' }, [{ from: 443, to: 443 }], '*.corp.example:443'],
    ['*', { kind: 'any' }, null, '*'],
    ['*:22', { kind: 'any' }, [{ from: 22, to: 22 }], '*:22'],
    ['10.0.0.5:1-65535', { kind: 'cidr', family: 4, network: '10.0.0.5', prefix: 32 }, [{ from: 1, to: 65535 }], '10.0.0.5:1-65535'],
  ];
  test.each(cases)('%s', (text, host, ports, canonical) => {
    const rule = parseRule(text);
    expect(rule.host).toEqual(host);
    expect(rule.ports).toEqual(ports);
    expect(rule.text).toBe(canonical);
    expect(formatRule(rule)).toBe(canonical);
    // canonical text round-trips to the same rule
    const again = parseRule(canonical);
    expect(again.host).toEqual(rule.host);
    expect(again.ports).toEqual(rule.ports);
  });

  test('rules are frozen', () => {
    const r = parseRule('10.0.0.0/8:22');
    expect(Object.isFrozen(r)).toBe(true);
    expect(Object.isFrozen(r.host)).toBe(true);
    expect(Object.isFrozen(r.ports)).toBe(true);
  });

  test('64 port items are fine', () => {
    const ports = Array.from({ length: 64 }, (_, i) => String(i + 1)).join(',');
    expect(parseRule(`10.0.0.1:${ports}`).ports).toHaveLength(64);
  });
});

describe('parseRule: bad rules', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty rule/],
    [' ', /whitespace/],
    ['10.0.0.0/8 ', /whitespace/],
    ['10.0.0.0 /8', /whitespace/],
    ['10.0.0.0/8\n', /control characters/],
    ['printer\u0000.lan', /control characters/],
    ['\u001b[31mred', /control characters/],
    ['10.0.0.0/33', /prefix must be 0-32/],
    ['10.0.0.0/-1', /prefix must be 0-32/],
    ['10.0.0.0/', /prefix must be 0-32/],
    ['10.0.0.0/8/8', /prefix must be 0-32/],
    ['fd00::/129', /prefix must be 0-128/],
    ['[fd00::/200]:22', /prefix must be 0-128/],
    ['300.0.0.0/8', /not a valid IP address/],
    ['10.0.0.256', /not a valid IP address/],
    ['10.0.0.1:0', /port 0 out of range/],
    ['10.0.0.1:65536', /port 65536 out of range/],
    ['10.0.0.1:99999', /port 99999 out of range/],
    ['10.0.0.1:123456', /bad port "123456"/],
    ['10.0.0.1:', /empty port list/],
    ['10.0.0.1:80,', /bad port ""/],
    ['10.0.0.1:http', /bad port "http"/],
    ['10.0.0.1:-5', /bad port "-5"/],
    ['10.0.0.1:8100-8000', /reversed port range 8100-8000/],
    ['10.0.0.1:1-2-3', /bad port "1-2-3"/],
    ['fd00::1:22:x', /IPv6.*brackets|not a valid IPv6/],
    ['[fd00::1', /missing "\]"/],
    ['[fd00::1]22', /expected ":PORTS"/],
    ['[10.0.0.1]:22', /brackets are only for IPv6/],
    ['[zz::1]:22', /not a valid IPv6 address/],
    [':22', /missing host/],
    ['printer_lan!', /not a valid host name label/],
    ['-printer.lan', /not a valid host name label/],
    ['printer..lan', /not a valid host name label/],
    ['bücher.lan', /not a valid host name label/],
    [`${'a'.repeat(64)}.lan`, /not a valid host name label/],
    [`${'abcdefghi.'.repeat(26)}lan`, /longer than 253/],
    ['x'.repeat(301), /longer than 300 characters/],
    ['*.', /empty host name/],
    ['*.*.corp', /not a valid host name label/],
    ['a*.corp', /"\*" is only allowed/],
    ['**', /"\*" is only allowed/],
    ['printer.lan:80:90', /IPv6|not a valid/],
  ];
  test.each(cases)('%j is refused', (text, message) => {
    let err: unknown;
    try {
      parseRule(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BrokerError);
    const be = err as BrokerError;
    expect(be.code).toBe('BRK_BAD_OPTION');
    expect(be.message).toMatch(message);
    expect(be.message).toMatch(/^bad rule ".*": .*; a valid example: /);
    expect(be.message).not.toMatch(/[\n\r\u0000\u001b]/); // one line, terminal-safe
  });

  test('more than 64 port items', () => {
    const ports = Array.from({ length: 65 }, (_, i) => String(i + 1)).join(',');
    expect(() => parseRule(`10.0.0.1:${ports}`)).toThrow(/more than 64 port items/);
  });

  test('the message quotes the rule and gives an example', () => {
    expect(() => parseRule('10.0.0.0/33')).toThrow('bad rule "10.0.0.0/33": prefix must be 0-32; a valid example: 10.20.0.0/16');
  });

  test('non-string input', () => {
    expect(() => parseRule(42 as unknown as string)).toThrow(/must be a string/);
  });
});

describe('portMatches / describePorts', () => {
  const cases: Array<[string, number, boolean]> = [
    ['10.0.0.1', 1, true],
    ['10.0.0.1', 65535, true],
    ['10.0.0.1:22', 22, true],
    ['10.0.0.1:22', 23, false],
    ['printer.lan:80,443', 80, true],
    ['printer.lan:80,443', 443, true],
    ['printer.lan:80,443', 8080, false],
    ['nas:8000-8100', 7999, false],
    ['nas:8000-8100', 8000, true],
    ['nas:8000-8100', 8100, true],
    ['nas:8000-8100', 8101, false],
    ['nas:80,8000-8100', 8050, true],
    ['nas:80,8000-8100', 81, false],
  ];
  test.each(cases)('%s admits port %d: %s', (text, port, expected) => {
    expect(portMatches(parseRule(text), port)).toBe(expected);
  });

  test('describePorts', () => {
    expect(describePorts(parseRule('10.0.0.1'))).toBe('any port');
    expect(describePorts(parseRule('10.0.0.1:22'))).toBe('port 22');
    expect(describePorts(parseRule('10.0.0.1:80,443'))).toBe('ports 80,443');
    expect(describePorts(parseRule('10.0.0.1:8000-8100'))).toBe('ports 8000-8100');
  });
});

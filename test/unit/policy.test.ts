import { BrokerError } from '../../src/errors';
import { DEFAULT_ALLOW, Policy, allowsSensitiveExplicitly, type PolicyDecision } from '../../src/policy/policy';
import { parseRule } from '../../src/policy/rules';
import { makeTarget } from '../../src/protocol/target';

type Case = [label: string, allow: string[], deny: string[], ip: string, port: number, name: string | undefined, expected: string];

/** expected: 'allow:<rule>' or 'deny:<substring of reason>' */
function verdict(d: PolicyDecision): string {
  return d.allowed ? `allow:${d.rule}` : `deny:${d.reason}`;
}

function expectVerdict(d: PolicyDecision, expected: string): void {
  if (expected.startsWith('allow:')) {
    expect(verdict(d)).toBe(expected);
  } else {
    expect(d.allowed).toBe(false);
    if (!d.allowed) {
      expect(d.code).toBe('BRK_POLICY_DENIED');
      expect(d.reason).toContain(expected.slice('deny:'.length));
      expect(d.reason).not.toMatch(/[\n\r]/);
    }
  }
}

describe('Policy.checkDial', () => {
  const DEV = ['10.20.0.0/16', 'printer.lan:80,443', '127.0.0.1:8080'];
  const cases: Case[] = [
    // plain allow / not allowed
    ['in allowed CIDR', DEV, [], '10.20.3.4', 22, undefined, 'allow:10.20.0.0/16'],
    ['outside allow list', DEV, [], '203.0.113.5', 443, undefined,
      "deny:203.0.113.5:443 is not in the device's allow list (10.20.0.0/16, printer.lan:80,443, 127.0.0.1:8080)"],
    ['name rule allows resolved ip', DEV, [], '192.0.2.7', 443, 'printer.lan', 'allow:printer.lan:80,443'],
    ['name rule case/trailing dot', DEV, [], '192.0.2.7', 80, 'PRINTER.lan.', 'allow:printer.lan:80,443'],
    ['name rule wrong port', DEV, [], '192.0.2.7', 22, 'printer.lan', "deny:printer.lan:22 (192.0.2.7) is not in the device's allow list"],
    ['name rule needs the name', DEV, [], '192.0.2.7', 80, undefined, 'deny:not in the device'],
    // deny beats allow
    ['deny beats allow', DEV, ['10.20.0.1'], '10.20.0.1', 22, undefined, 'deny:10.20.0.1:22 is denied by rule "10.20.0.1"'],
    ['deny leaves neighbours', DEV, ['10.20.0.1'], '10.20.0.2', 22, undefined, 'allow:10.20.0.0/16'],
    ['deny with port only that port', DEV, ['10.20.0.0/24:22'], '10.20.0.9', 80, undefined, 'allow:10.20.0.0/16'],
    ['deny with port', DEV, ['10.20.0.0/24:22'], '10.20.0.9', 22, undefined, 'deny:is denied by rule "10.20.0.0/24:22"'],
    ['deny name rule', DEV, ['printer.lan:443'], '192.0.2.7', 443, 'printer.lan', 'deny:printer.lan:443 (192.0.2.7) is denied by rule "printer.lan:443"'],
    ['deny suffix rule', ['*'], ['*.evil.example'], '192.0.2.9', 443, 'x.evil.example', 'deny:is denied by rule "*.evil.example"'],
    ['deny * port', ['10.0.0.0/8'], ['*:25'], '10.1.1.1', 25, undefined, 'deny:is denied by rule "*:25"'],
    ['deny beats explicit loopback', ['127.0.0.1:8080'], ['127.0.0.0/8'], '127.0.0.1', 8080, undefined, 'deny:denied by rule "127.0.0.0/8"'],
    ['deny in other spelling', ['10.0.0.0/8'], ['0x0a.0x14.0.1'], '10.20.0.1', 22, undefined, 'deny:denied by rule "10.20.0.1"'],
    ['deny ::/0 covers IPv4', ['10.0.0.0/8'], ['::/0'], '10.20.0.1', 22, undefined, 'deny:denied by rule "::/0"'],
    ['deny v4 matched by mapped ip', ['fc00::/7', '10.0.0.0/8'], ['10.20.0.1'], '::ffff:10.20.0.1', 22, undefined, 'deny:10.20.0.1:22 is denied'],
    // sensitive addresses and their spellings
    ['loopback not allowed by default', [], [], '127.0.0.1', 80, undefined,
      'deny:127.0.0.1:80 is loopback; name it explicitly (--allow 127.0.0.1:80) to allow it'],
    ['::ffff:127.0.0.1', DEV, [], '::ffff:127.0.0.1', 80, undefined, 'deny:127.0.0.1:80 is loopback'],
    ['0x7f.1', DEV, [], '0x7f.1', 80, undefined, 'deny:127.0.0.1:80 is loopback'],
    ['2130706433', DEV, [], '2130706433', 80, undefined, 'deny:127.0.0.1:80 is loopback'],
    ['0.0.0.0', ['0.0.0.0/0'], [], '0.0.0.0', 80, undefined, 'deny:0.0.0.0:80 is an unspecified address'],
    ['[::]', ['::/0'], [], '[::]', 80, undefined, 'deny:[::]:80 is an unspecified address'],
    ['::1', ['::/0'], [], '::1', 22, undefined, 'deny:[::1]:22 is loopback; name it explicitly (--allow [::1]:22)'],
    ['metadata', ['169.254.0.0/16'], [], '169.254.169.254', 80, undefined, 'deny:169.254.169.254:80 is a cloud metadata address'],
    ['metadata mapped', ['0.0.0.0/0'], [], '::ffff:a9fe:a9fe', 80, undefined, 'deny:169.254.169.254:80 is a cloud metadata address'],
    ['metadata v6', [], [], 'fd00:ec2::254', 80, undefined, 'deny:[fd00:ec2::254]:80 is a cloud metadata address'],
    ['link-local', ['*'], [], 'fe80::1%eth0', 80, undefined, 'deny:[fe80::1]:80 is link-local'],
    ['multicast', ['0.0.0.0/0'], [], '239.255.255.250', 1900, undefined, 'deny:is multicast'],
    ['broadcast', ['0.0.0.0/0'], [], '255.255.255.255', 9, undefined, 'deny:is broadcast'],
    ['NAT64 loopback', ['::/0'], [], '64:ff9b::7f00:1', 80, undefined, 'deny:is loopback'],
    // broad rules never allow sensitive addresses
    ['0.0.0.0/0 not loopback', ['0.0.0.0/0'], [], '127.0.0.1', 80, undefined, 'deny:is loopback'],
    ['* not loopback', ['*'], [], '127.0.0.1', 80, undefined, 'deny:is loopback'],
    ['::/0 not loopback', ['::/0'], [], '127.0.0.1', 80, undefined, 'deny:is loopback'],
    ['64/2 not loopback', ['64.0.0.0/2'], [], '127.0.0.1', 80, undefined, 'deny:is loopback'],
    // DNS rebinding: name rules never allow sensitive addresses
    ['rebinding via name rule', ['printer.lan'], [], '127.0.0.1', 80, 'printer.lan',
      'deny:printer.lan:80 resolved to 127.0.0.1, which is loopback'],
    ['localhost name rule', ['localhost'], [], '127.0.0.1', 80, 'localhost', 'deny:is loopback'],
    ['suffix rule rebinding', ['*.corp.example'], [], '169.254.169.254', 80, 'meta.corp.example', 'deny:is a cloud metadata address'],
    // explicit sensitive allows
    ['explicit 127.0.0.1:8080', DEV, [], '127.0.0.1', 8080, undefined, 'allow:127.0.0.1:8080'],
    ['explicit 127.0.0.1:8080 only 8080', DEV, [], '127.0.0.1', 8081, undefined, 'deny:127.0.0.1:8081 is loopback'],
    ['explicit 127.0.0.1 not 127.0.0.2', DEV, [], '127.0.0.2', 8080, undefined, 'deny:is loopback'],
    ['explicit via name still needs ip rule', DEV, [], '127.0.0.1', 8080, 'localhost', 'allow:127.0.0.1:8080'],
    ['127.0.0.0/8', ['127.0.0.0/8'], [], '127.5.5.5', 1, undefined, 'allow:127.0.0.0/8'],
    ['127.0.0.0/8 allows mapped', ['127.0.0.0/8'], [], '::ffff:127.0.0.1', 1, undefined, 'allow:127.0.0.0/8'],
    ['explicit metadata', ['169.254.169.254'], [], '169.254.169.254', 80, undefined, 'allow:169.254.169.254'],
    ['explicit metadata in other spelling', ['0xa9fea9fe:80'], [], '169.254.169.254', 80, undefined, 'allow:169.254.169.254:80'],
    ['link-local /16 allows link-local', ['169.254.0.0/16'], [], '169.254.7.7', 80, undefined, 'allow:169.254.0.0/16'],
    ['explicit ::1', ['::1'], [], '::1', 80, undefined, 'allow:::1'],
    ['explicit fe80::/10', ['fe80::/10'], [], 'fe80::abcd', 80, undefined, 'allow:fe80::/10'],
    ['explicit 0.0.0.0', ['0.0.0.0'], [], '0.0.0.0', 80, undefined, 'allow:0.0.0.0'],
    // default policy
    ['default 10/8', [], [], '10.1.2.3', 22, undefined, 'allow:10.0.0.0/8'],
    ['default 172.16/12', [], [], '172.31.0.1', 22, undefined, 'allow:172.16.0.0/12'],
    ['default 172.32 not private', [], [], '172.32.0.1', 22, undefined, 'deny:private ranges by default'],
    ['default 192.168/16', [], [], '192.168.1.1', 443, undefined, 'allow:192.168.0.0/16'],
    ['default ULA', [], [], 'fd12::1', 443, undefined, 'allow:fc00::/7'],
    ['default public', [], [], '8.8.8.8', 53, undefined, 'deny:8.8.8.8:53 is not in the device\'s allow list (private ranges by default: 10.0.0.0/8'],
    ['default not mapped public', [], [], '::ffff:8.8.8.8', 53, undefined, 'deny:8.8.8.8:53 is not in'],
    // any
    ['* allows public', ['*'], [], '8.8.8.8', 53, undefined, 'allow:*'],
    ['::/0 covers public IPv4 too', ['::/0'], [], '8.8.8.8', 53, undefined, 'allow:::/0'],
    ['fc00::/7 covers no IPv4', ['fc00::/7'], [], '10.0.0.1', 53, undefined, 'deny:not in the device'],
    ['*:22 only port 22', ['*:22'], [], '8.8.8.8', 80, undefined, 'deny:not in the device'],
    // hostile input
    ['not an ip', DEV, [], 'printer.lan', 80, undefined, 'deny:"printer.lan" is not an IP address'],
    ['empty ip', DEV, [], '', 80, undefined, 'deny:is not an IP address'],
    ['control chars in ip', DEV, [], '10.20.0.1\n', 80, undefined, 'deny:"10.20.0.1\\x0a" is not an IP address'],
    ['port 0', DEV, [], '10.20.0.1', 0, undefined, 'deny:bad port 0'],
    ['port 65536', DEV, [], '10.20.0.1', 65536, undefined, 'deny:bad port 65536'],
    ['port NaN', DEV, [], '10.20.0.1', NaN, undefined, 'deny:bad port NaN'],
    ['port 1.5', DEV, [], '10.20.0.1', 1.5, undefined, 'deny:bad port 1.5'],
    ['hostile name is escaped', ['*'], [], '127.0.0.1', 80, 'a\u001b[2Jb', 'deny:a\\x1b[2jb:80 resolved to 127.0.0.1'],
    ['ip as requested name is not a name', ['10.0.0.0/8'], [], '10.1.1.1', 80, '10.1.1.1', 'allow:10.0.0.0/8'],
  ];
  test.each(cases)('%s', (_label, allow, deny, ip, port, name, expected) => {
    expectVerdict(Policy.fromRules(allow, deny).checkDial(ip, port, name), expected);
  });
});

describe('Policy.checkRequest', () => {
  const DEV = ['10.20.0.0/16', 'printer.lan:80,443'];
  const cases: Array<[label: string, allow: string[], deny: string[], host: string, port: number, expected: string]> = [
    ['ip target', DEV, [], '10.20.0.5', 22, 'allow:10.20.0.0/16'],
    ['ipv6 loopback', DEV, [], '::1', 22, 'deny:is loopback'],
    ['mapped ipv6 target', DEV, [], '::ffff:127.0.0.1', 22, 'deny:127.0.0.1:22 is loopback'],
    ['name that is an IP: 0x7f.1', DEV, [], '0x7f.1', 80, 'deny:127.0.0.1:80 is loopback'],
    ['name that is an IP: 2130706433', DEV, [], '2130706433', 80, 'deny:127.0.0.1:80 is loopback'],
    ['name that is an IP: 127.1', ['*'], [], '127.1', 80, 'deny:127.0.0.1:80 is loopback'],
    ['name that is an IP, allowed', DEV, [], '0x0a.0x14.0.5', 80, 'allow:10.20.0.0/16'],
    ['allowed name', DEV, [], 'printer.lan', 443, 'allow:printer.lan:80,443'],
    ['allowed name wrong port, resolve on device', DEV, [], 'printer.lan', 22, 'allow:resolve-on-device'],
    ['unknown name, resolve on device', DEV, [], 'nas.lan', 22, 'allow:resolve-on-device'],
    ['no CIDR admits the port', ['10.20.0.0/16:22', 'printer.lan:80'], [], 'nas.lan', 443,
      "deny:nas.lan:443 is not in the device's allow list (10.20.0.0/16:22, printer.lan:80)"],
    ['names only policy', ['printer.lan:80'], [], 'other.lan', 80, 'deny:not in the device'],
    ['denied name', DEV, ['printer.lan'], 'printer.lan', 443, 'deny:printer.lan:443 is denied by rule "printer.lan"'],
    ['denied suffix', DEV, ['*.evil.example'], 'a.b.evil.example', 443, 'deny:denied by rule "*.evil.example"'],
    ['suffix does not match apex', ['*.corp.example:443'], [], 'corp.example', 443, 'deny:not in the device'],
    ['suffix matches subdomain', ['*.corp.example:443'], [], 'x.corp.example', 443, 'allow:*.corp.example:443'],
    ['suffix is not a substring match', ['*.corp.example'], [], 'evilcorp.example', 443, 'deny:not in the device'],
    ['deny * port', DEV, ['*:25'], 'mail.lan', 25, 'deny:denied by rule "*:25"'],
    ['localhost denied by default', [], [], 'localhost', 80, 'deny:localhost:80 is loopback; name the address explicitly (--allow 127.0.0.1:80)'],
    ['LOCALHOST. denied', ['*'], [], 'LOCALHOST.', 80, 'deny:is loopback'],
    ['*.localhost denied', ['*'], [], 'app.localhost', 80, 'deny:is loopback'],
    ['localhost name rule does not help', ['localhost'], [], 'localhost', 80, 'deny:is loopback'],
    ['localhost allowed by explicit loopback', ['127.0.0.1:8080'], [], 'localhost', 8080, 'allow:127.0.0.1:8080'],
    ['localhost explicit loopback wrong port', ['127.0.0.1:8080'], [], 'localhost', 8081, 'deny:is loopback'],
    ['localhost allowed by ::1', ['::1'], [], 'localhost', 80, 'allow:::1'],
    ['default policy name', [], [], 'nas.lan', 80, 'allow:resolve-on-device'],
  ];
  test.each(cases)('%s', (_label, allow, deny, host, port, expected) => {
    expectVerdict(Policy.fromRules(allow, deny).checkRequest(makeTarget(host, port)), expected);
  });
});

describe('Policy decisions made once', () => {
  test('a repeated check gives the same (frozen) decision as the first', () => {
    const p = Policy.fromRules(['10.20.0.0/16'], []);
    const first = p.checkDial('10.20.3.4', 22);
    expect(p.checkDial('10.20.3.4', 22)).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    const t = makeTarget('10.20.3.4', 22);
    expect(p.checkRequest(t)).toBe(p.checkRequest(t));
  });

  test('inputs that would read alike when joined never share a decision', () => {
    const p = Policy.fromRules(['10.20.0.0/16', 'x.lan'], []);
    // ip "10.20.3.4" + name "x.lan" and ip "10.20.3.4x" + name ".lan" join to the same text
    expect(p.checkDial('10.20.3.4', 80, 'x.lan').allowed).toBe(true);
    expectVerdict(p.checkDial('10.20.3.4x', 80, '.lan'), 'deny:is not an IP address');
    // and the other order
    const q = Policy.fromRules(['10.20.0.0/16', 'x.lan'], []);
    expectVerdict(q.checkDial('10.20.3.4x', 80, '.lan'), 'deny:is not an IP address');
    expect(q.checkDial('10.20.3.4', 80, 'x.lan').allowed).toBe(true);
    // the port is part of the key
    const r = Policy.fromRules(['printer.lan:80'], []);
    expect(r.checkRequest(makeTarget('printer.lan', 80)).allowed).toBe(true);
    expect(r.checkRequest(makeTarget('printer.lan', 8080)).allowed).toBe(false);
  });

  test('decisions stay right past the memo size, for long names too, and never depend on order', () => {
    const p = Policy.fromRules(['10.20.0.0/16'], ['10.20.9.9']);
    for (let i = 0; i < 2500; i++) {
      const ip = `10.20.${(i >> 8) & 255}.${i & 255}`;
      expect(p.checkDial(ip, 443).allowed).toBe(ip !== '10.20.9.9');
    }
    expectVerdict(p.checkDial('10.20.9.9', 443), 'deny:denied by rule "10.20.9.9"');
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    expectVerdict(p.checkDial('127.0.0.1', 22, long), 'deny:loopback');
    expectVerdict(p.checkDial('127.0.0.1', 22, long), 'deny:loopback');
    expect(p.checkDial('10.20.1.1', 22, long).allowed).toBe(true);
  });
});

describe('allowsSensitiveExplicitly', () => {
  const cases: Array<[string, string, number, boolean]> = [
    ['127.0.0.1:8080', '127.0.0.1', 8080, true],
    ['127.0.0.1:8080', '127.0.0.1', 80, false],
    ['127.0.0.0/8', '127.0.0.1', 80, true],
    ['127.0.0.0/7', '127.0.0.1', 80, false],
    ['0.0.0.0/0', '127.0.0.1', 80, false],
    ['*', '127.0.0.1', 80, false],
    ['localhost', '127.0.0.1', 80, false],
    ['169.254.0.0/16', '169.254.169.254', 80, false],
    ['169.254.169.254', '169.254.169.254', 80, true],
    ['::/0', '::1', 80, false],
    ['::1', '::1', 80, true],
    ['ff00::/8', 'ff02::1', 80, true],
    ['ff00::/7', 'ff02::1', 80, false],
  ];
  test.each(cases)('rule %s, %s port %d: %s', (rule, ip, port, expected) => {
    expect(allowsSensitiveExplicitly(parseRule(rule), ip, port)).toBe(expected);
  });
});

describe('Policy construction and describe()', () => {
  test('empty allow means the default private ranges', () => {
    const p = Policy.fromRules([], []);
    expect(p.isDefault).toBe(true);
    expect(p.allow.map((r) => r.text)).toEqual([...DEFAULT_ALLOW]);
    expect(DEFAULT_ALLOW).toEqual(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']);
  });

  test('a bad rule throws BRK_BAD_OPTION', () => {
    expect(() => Policy.fromRules(['10.0.0.0/33'], [])).toThrow(BrokerError);
    expect(() => Policy.fromRules([], ['bad rule'])).toThrow(/whitespace/);
  });

  test('describe lists allow and deny rules', () => {
    const lines = Policy.fromRules(['10.20.0.0/16', 'printer.lan:80,443', '*.corp:22', '*:53'], ['10.20.0.1']).describe();
    expect(lines).toEqual(
      expect.arrayContaining([
        'allow 10.20.0.0/16 any port',
        'allow printer.lan ports 80,443',
        'allow *.corp (subdomains) port 22',
        'allow any host port 53',
        'deny 10.20.0.1 any port',
      ]),
    );
    expect(lines.join('\n')).toMatch(/never loopback/);
  });

  test('describe of the default policy', () => {
    expect(Policy.fromRules([], []).describe()[0]).toBe(
      'allow private ranges (default): 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7 any port',
    );
  });

  test('long allow lists are shortened in reasons', () => {
    const allow = Array.from({ length: 10 }, (_, i) => `10.${i}.0.0/16`);
    const d = Policy.fromRules(allow, []).checkDial('192.0.2.1', 80);
    expect(d.allowed).toBe(false);
    if (!d.allowed) expect(d.reason).toMatch(/10\.5\.0\.0\/16 and 4 more\)$/);
  });
});

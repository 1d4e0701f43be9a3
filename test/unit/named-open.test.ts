import { announcesNamedOpens, encodeNamedOpen, encodeProbe, NAMED_OPEN_FEATURE, parseNamedOpen } from '../../src/protocol/named-open';
import { makeTarget } from '../../src/protocol/target';

describe('named opens: originator fields', () => {
  test.each([
    ['an IPv4 address', '10.1.2.3', 22],
    ['an IPv6 address', '2001:db8::1', 443],
    ['a name', 'printer.lan', 631],
  ])('a connect to %s survives the trip', (_what, host, port) => {
    const target = makeTarget(host, port);
    const { originAddr, originPort } = encodeNamedOpen(target, 42);
    expect(parseNamedOpen(originAddr, originPort)).toEqual({ kind: 'connect', helper: 42, target });
  });

  test('a probe survives the trip', () => {
    const { originAddr, originPort } = encodeProbe();
    expect(parseNamedOpen(originAddr, originPort)).toEqual({ kind: 'probe' });
  });

  test.each([
    ['OpenSSH-style address', '127.0.0.1', 54321],
    ['empty address', '', 0],
    ['not a string', 42, 1],
    ['undefined', undefined, undefined],
  ])('anything not ours (%s) means SOCKS5 follows', (_what, addr, port) => {
    expect(parseNamedOpen(addr, port)).toEqual({ kind: 'socks' });
  });

  test.each([
    ['unknown verb', 'remote-assist:teleport:1:host', 80, 'BRK_BAD_REQUEST'],
    ['probe with a suffix', 'remote-assist:probe:1', 0, 'BRK_BAD_REQUEST'],
    ['no helper id', 'remote-assist:connect:host', 80, 'BRK_BAD_REQUEST'],
    ['empty helper id', 'remote-assist:connect::host', 80, 'BRK_BAD_REQUEST'],
    ['helper id 0', 'remote-assist:connect:0:host', 80, 'BRK_BAD_REQUEST'],
    ['negative helper id', 'remote-assist:connect:-1:host', 80, 'BRK_BAD_REQUEST'],
    ['helper id with leading zero', 'remote-assist:connect:01:host', 80, 'BRK_BAD_REQUEST'],
    ['helper id beyond 32 bits', 'remote-assist:connect:9999999999:host', 80, 'BRK_BAD_REQUEST'],
    ['helper id in hex', 'remote-assist:connect:0x10:host', 80, 'BRK_BAD_REQUEST'],
    ['empty host', 'remote-assist:connect:1:', 80, 'BRK_BAD_TARGET'],
    ['host with a space', 'remote-assist:connect:1:a b', 80, 'BRK_BAD_TARGET'],
    ['host with a slash', 'remote-assist:connect:1:a/b', 80, 'BRK_BAD_TARGET'],
    ['host with control characters', 'remote-assist:connect:1:a\r\nb', 80, 'BRK_BAD_TARGET'],
    ['host of 300 characters', `remote-assist:connect:1:${'a'.repeat(300)}`, 80, 'BRK_BAD_TARGET'],
    ['port 0', 'remote-assist:connect:1:host', 0, 'BRK_BAD_TARGET'],
    ['port 65536', 'remote-assist:connect:1:host', 65536, 'BRK_BAD_TARGET'],
    ['no port', 'remote-assist:connect:1:host', undefined, 'BRK_BAD_TARGET'],
  ])('a hostile named open (%s) is refused with a typed error', (_what, addr, port, code) => {
    const open = parseNamedOpen(addr, port);
    expect(open.kind).toBe('invalid');
    if (open.kind !== 'invalid') return;
    expect(open.error.code).toBe(code);
    // printable: the refusal text never carries the peer's control characters
    expect(open.error.message).not.toMatch(/[\r\n]/);
  });

  test('a bracketed IPv6 host is read as the address', () => {
    expect(parseNamedOpen('remote-assist:connect:7:[::1]', 22)).toEqual({ kind: 'connect', helper: 7, target: makeTarget('::1', 22) });
  });
});

describe('named opens: the announcement', () => {
  test.each([
    [NAMED_OPEN_FEATURE, true],
    [`other ${NAMED_OPEN_FEATURE} more`, true],
    [`${NAMED_OPEN_FEATURE}x`, false],
    [`x${NAMED_OPEN_FEATURE}`, false],
    ['', false],
    [undefined, false],
    [42, false],
  ])('ident comments %p → %p', (comments, expected) => {
    expect(announcesNamedOpens(comments)).toBe(expected);
  });
});

import { BrokerError, BROKER_ERROR_CODES, fromDialError, fromSocksReply, isExpectedClose, socksReplyMessage, toHttpStatus, toOpenFailure, toSocksReply } from '../../src/errors';

describe('error mapping tables', () => {
  test.each([
    ['BRK_POLICY_DENIED', 0x02, 1, 403],
    ['BRK_CONN_REFUSED', 0x05, 2, 502],
    ['BRK_HOST_UNREACHABLE', 0x04, 2, 502],
    ['BRK_NET_UNREACHABLE', 0x03, 2, 502],
    ['BRK_TIMEOUT', 0x06, 2, 504],
    ['BRK_AGENT_OFFLINE', 0x03, 2, 502],
    ['BRK_BAD_TARGET', 0x08, 2, 400],
    ['BRK_UNSUPPORTED', 0x07, 3, 405],
    ['BRK_INTERNAL', 0x01, 2, 502],
  ] as const)('%s → SOCKS 0x%s, SSH %s, HTTP %s', (code, socks, ssh, http) => {
    expect(toSocksReply(code)).toBe(socks);
    expect(toOpenFailure(code)).toBe(ssh);
    expect(toHttpStatus(code)).toBe(http);
    const e = new BrokerError(code, 'x');
    expect([e.socksReply, e.openFailure, e.httpStatus]).toEqual([socks, ssh, http]);
  });

  test('every code has a mapping', () => {
    for (const code of BROKER_ERROR_CODES) {
      expect(toSocksReply(code)).toBeGreaterThanOrEqual(0);
      expect(toHttpStatus(code)).toBeGreaterThanOrEqual(400);
    }
  });

  test('device reply bytes survive the round trip reply → code → reply', () => {
    for (const rep of [0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x01]) {
      expect(toSocksReply(fromSocksReply(rep))).toBe(rep);
    }
    expect(fromSocksReply(0x99)).toBe('BRK_INTERNAL');
    expect(socksReplyMessage(0x05)).toBe('connection refused');
    expect(socksReplyMessage(0x42)).toMatch(/unknown reply 0x42/);
  });
});

describe('fromDialError', () => {
  test.each([
    ['ECONNREFUSED', 'BRK_CONN_REFUSED'],
    ['EHOSTUNREACH', 'BRK_HOST_UNREACHABLE'],
    ['ENOTFOUND', 'BRK_HOST_UNREACHABLE'],
    ['EAI_AGAIN', 'BRK_HOST_UNREACHABLE'],
    ['ENETUNREACH', 'BRK_NET_UNREACHABLE'],
    ['ETIMEDOUT', 'BRK_TIMEOUT'],
    ['EWEIRD', 'BRK_INTERNAL'],
  ])('%s → %s with the target in the message', (errno, code) => {
    const e = fromDialError(Object.assign(new Error('boom'), { code: errno }), '10.0.0.5:22');
    expect(e.code).toBe(code);
    expect(e.message).toContain('10.0.0.5:22');
    expect(e.message).not.toContain('\n');
  });

  test('keeps a BrokerError as it is', () => {
    const orig = new BrokerError('BRK_POLICY_DENIED', 'no');
    expect(fromDialError(orig, 'x')).toBe(orig);
  });
});

test('isExpectedClose', () => {
  expect(isExpectedClose(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBe(true);
  expect(isExpectedClose(new Error('Channel closed'))).toBe(true);
  expect(isExpectedClose(new Error('disk on fire'))).toBe(false);
});

import { parseStockExposeArgs } from '../../src/broker/stock-args';
import { parseDuration, parseListen, formatHostPort } from '../../src/config';

describe('stock ssh expose arguments', () => {
  test('empty and bare expose', () => {
    expect(parseStockExposeArgs('')).toEqual({ allow: [], deny: [] });
    expect(parseStockExposeArgs('expose')).toEqual({ allow: [], deny: [] });
  });
  test('flags with spaces or =', () => {
    expect(parseStockExposeArgs('--allow 10.0.0.0/8 --allow=printer.lan:80,443 --deny 10.0.0.1 --label kiosk --max-helpers 2')).toEqual({
      allow: ['10.0.0.0/8', 'printer.lan:80,443'], deny: ['10.0.0.1'], label: 'kiosk', maxHelpers: 2,
    });
  });
  test.each([
    ['--allow', /needs a value/],
    ['--max-helpers 0', /positive whole number/],
    ['--max-helpers two', /positive whole number/],
    ['--rm -rf /', /unknown option "--rm"/],
    ['; cat /etc/passwd', /unknown option/],
  ])('refuses %s', (cmd, msg) => {
    expect(() => parseStockExposeArgs(cmd)).toThrow(msg);
  });
});

describe('config helpers', () => {
  test.each([
    ['1500', 1500], ['1500ms', 1500], ['2s', 2000], ['1.5m', 90_000], ['1h', 3_600_000], ['abc', null], ['-1s', null], ['', null],
  ])('parseDuration(%s) = %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  test.each([
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:2222', { host: '::1', port: 2222 }],
    [':1080', { host: 'def', port: 1080 }],
    ['1080', { host: 'def', port: 1080 }],
    ['host:70000', null],
    ['host', null],
  ])('parseListen(%s)', (text, want) => expect(parseListen(text, 'def')).toEqual(want));

  test('formatHostPort brackets IPv6', () => {
    expect(formatHostPort('::1', 22)).toBe('[::1]:22');
    expect(formatHostPort('10.0.0.1', 22)).toBe('10.0.0.1:22');
  });
});

import { PassThrough } from 'node:stream';
import { encodeEvent, errorFromEvent, parseJsonLine, readLines } from '../../src/protocol/control';
import { BrokerError } from '../../src/errors';

describe('readLines', () => {
  test('splits lines across chunks, skips blanks, strips CR', () => {
    const s = new PassThrough();
    const lines: string[] = [];
    readLines(s, (l) => lines.push(l), () => { throw new Error('no error expected'); });
    s.write('{"a":1}\r\n\n{"b"');
    s.write(':2}\n{"c":3}');
    s.write('\n');
    expect(lines).toEqual(['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  test('multi-byte characters split across chunks stay intact', () => {
    const s = new PassThrough();
    const lines: string[] = [];
    readLines(s, (l) => lines.push(l), () => {});
    const buf = Buffer.from('"héllo ☃"\n');
    s.write(buf.subarray(0, 3));
    s.write(buf.subarray(3));
    expect(lines).toEqual(['"héllo ☃"']);
  });

  test('a line over the limit is an error and reading stops', () => {
    const s = new PassThrough();
    const lines: string[] = [];
    const errors: BrokerError[] = [];
    readLines(s, (l) => lines.push(l), (e) => errors.push(e), 16);
    s.write('x'.repeat(10));
    s.write('y'.repeat(10));
    s.write('\n{"late":1}\n');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.code).toBe('BRK_BAD_REQUEST');
    expect(lines).toEqual([]);
  });

  test('the stop function detaches the reader', () => {
    const s = new PassThrough();
    const lines: string[] = [];
    const stop = readLines(s, (l) => { lines.push(l); stop(); }, () => {});
    s.write('1\n2\n3\n');
    expect(lines).toEqual(['1']);
  });
});

describe('parseJsonLine', () => {
  test.each(['not json', '[1,2]', '42', 'null', '"str"'])('refuses %s', (line) => {
    expect(() => parseJsonLine(line, 'expose request')).toThrow(/expose request/);
  });
  test('accepts an object', () => {
    expect(parseJsonLine('{"type":"expose"}', 'x')).toEqual({ type: 'expose' });
  });
});

test('events encode as one JSON line; error events decode to BrokerError', () => {
  const line = encodeEvent({ event: 'error', code: 'BRK_BAD_DESCRIPTOR', message: 'descriptor.allow[0]: bad rule' });
  expect(line.endsWith('\n')).toBe(true);
  expect(line.indexOf('\n')).toBe(line.length - 1);
  const e = errorFromEvent(JSON.parse(line));
  expect(e.code).toBe('BRK_BAD_DESCRIPTOR');
  expect(errorFromEvent({ code: 'NOT_A_CODE', message: 1 }).code).toBe('BRK_INTERNAL');
});

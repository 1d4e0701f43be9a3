/**
 * The process logger: levels filter before winston does any work, child loggers
 * keep their parent's level and add their scope, and JSON lines carry the meta.
 */
import { PassThrough } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import winston from 'winston';
import { createLogger, type LogLevel } from '../../src/log';

async function lines(level: LogLevel, emit: (log: ReturnType<typeof createLogger>) => void): Promise<Array<Record<string, unknown>>> {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c.toString()));
  const log = createLogger({ format: 'json', level, stream, scope: 'test' });
  emit(log);
  await tick();
  return chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('createLogger', () => {
  test('messages below the level are dropped; the rest are JSON lines with their meta', async () => {
    const out = await lines('warn', (log) => {
      log.debug('d');
      log.info('i', { n: 1 });
      log.warn('w', { n: 2 });
      log.error('e');
    });
    expect(out.map((o) => [o.level, o.message])).toEqual([['warn', 'w'], ['error', 'e']]);
    expect(out[0]).toMatchObject({ n: 2, scope: 'test' });
  });

  test('a dropped message never reaches winston', async () => {
    const write = jest.spyOn(winston.Logger.prototype as unknown as { write: () => boolean }, 'write');
    try {
      await lines('warn', (log) => { log.info('not shown'); log.child('x').debug('nor this'); });
      expect(write).not.toHaveBeenCalled();
    } finally {
      write.mockRestore();
    }
  });

  test('below info, winston is loaded only when the first message passes the level (a quiet helper never loads it)', () => {
    let loads = 0;
    jest.isolateModules(() => {
      jest.doMock('winston', () => { loads++; return jest.requireActual('winston'); });
      const { createLogger: isolated } = require('../../src/log') as typeof import('../../src/log');
      const stream = new PassThrough();
      const log = isolated({ format: 'json', level: 'warn', stream, scope: 'test' });
      const child = log.child('chan#1');
      log.info('dropped');
      child.debug('dropped');
      expect(loads).toBe(0);
      child.warn('shown');
      log.error('shown');
      expect(loads).toBe(1);
      expect(isolated({ silent: true }).child('x').error('dropped')).toBeUndefined();
      expect(loads).toBe(1);
    });
    // at info (the broker's default) it is loaded at once, before the first session logs
    let early = 0;
    jest.isolateModules(() => {
      jest.doMock('winston', () => { early++; return jest.requireActual('winston'); });
      const { createLogger: isolated } = require('../../src/log') as typeof import('../../src/log');
      isolated({ level: 'info', stream: new PassThrough() });
      expect(early).toBe(1);
    });
  });

  test('child loggers keep the level and append their scope', async () => {
    const out = await lines('debug', (log) => {
      const c = log.child('chan#3', { helper: 2 });
      c.debug('opened');
      c.child('inner').info('deep');
    });
    expect(out).toEqual([
      expect.objectContaining({ level: 'debug', message: 'opened', scope: 'test › chan#3', helper: 2 }),
      expect.objectContaining({ level: 'info', message: 'deep', scope: 'test › chan#3 › inner' }),
    ]);
  });

  test('JSON lines carry an ISO timestamp; meta JSON cannot write (a cycle, a BigInt) still gives a line', async () => {
    const cyclic: Record<string, unknown> = { name: 'c' };
    cyclic.self = cyclic;
    const out = await lines('info', (log) => {
      log.info('plain', { n: 1 });
      log.info('cycle', { cyclic });
      log.warn('big', { b: 10n });
    });
    expect(out.map((o) => o.message)).toEqual(['plain', 'cycle', 'big']);
    for (const o of out) expect(new Date(String(o.timestamp)).toISOString()).toBe(o.timestamp);
    expect(out[1]).toMatchObject({ cyclic: { name: 'c', self: '[Circular]' } });
    expect(out[2]).toMatchObject({ level: 'warn', b: '10' });
  });
});

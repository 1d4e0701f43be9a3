/**
 * The client commands' output: lines for stdout wait for the end of the turn and go
 * out together, in order; notes with --json go to stderr at once; `flushAll` (before
 * an error line, and on exit) writes whatever waits.
 */
import { setImmediate as tick } from 'node:timers/promises';
import { Printer } from '../../src/cli/printer';

function spyOn(stream: NodeJS.WriteStream): { writes: string[]; restore: () => void } {
  const writes: string[] = [];
  const spy = jest.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => { writes.push(String(chunk)); return true; });
  return { writes, restore: () => spy.mockRestore() };
}

describe('Printer', () => {
  test('the lines of one turn go out in one write at its end, in order', async () => {
    const out = spyOn(process.stdout);
    try {
      const p = new Printer(true);
      p.event({ event: 'stream-opened', n: 1 }, 'opened');
      p.event({ event: 'stream-closed', n: 1 }, 'closed');
      expect(out.writes).toEqual([]);
      await tick();
      expect(out.writes).toEqual(['{"event":"stream-opened","n":1}\n{"event":"stream-closed","n":1}\n']);
      p.event({ event: 'later' }, 'later');
      await tick();
      expect(out.writes).toHaveLength(2);
      expect(out.writes[1]).toBe('{"event":"later"}\n');
    } finally {
      out.restore();
    }
  });

  test('text mode keeps notes in order with events; --json sends notes to stderr at once', async () => {
    const out = spyOn(process.stdout);
    const err = spyOn(process.stderr);
    try {
      const text = new Printer(false);
      text.event({ event: 'x' }, 'first');
      text.note('a note');
      await tick();
      expect(out.writes).toEqual(['first\na note\n']);
      const json = new Printer(true);
      json.note('remembered the host key');
      expect(err.writes).toEqual(['remembered the host key\n']);
    } finally {
      out.restore();
      err.restore();
    }
  });

  test('flushAll writes what waits at once (an error line or exit follows)', () => {
    const out = spyOn(process.stdout);
    try {
      const p = new Printer(true);
      p.event({ event: 'stream-opened' }, 'opened');
      Printer.flushAll();
      expect(out.writes).toEqual(['{"event":"stream-opened"}\n']);
      Printer.flushAll();
      expect(out.writes).toHaveLength(1);
    } finally {
      out.restore();
    }
  });
});

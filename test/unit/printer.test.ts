/**
 * The client commands' output: lines for stdout wait for the end of the turn and go
 * out together, in order; right after a write the next waits for the pace, with the
 * lines that follow it; notes with --json go to stderr at once; `flushAll` (before
 * an error line, and on exit) writes whatever waits, timer or not.
 */
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { Printer } from '../../src/cli/printer';

/** What the test writes to `stream`, captured until the test ends (afterEach restores it). */
function spyOn(stream: NodeJS.WriteStream): { writes: string[] } {
  const writes: string[] = [];
  jest.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => { writes.push(String(chunk)); return true; });
  return { writes };
}

const PACE = 40;

describe('Printer', () => {
  afterEach(() => {
    Printer.flushAll(); // into the spies, while they are there
    jest.restoreAllMocks();
  });

  test('the lines of one turn go out in one write at its end, in order', async () => {
    const out = spyOn(process.stdout);
    const p = new Printer(true, PACE);
    p.event({ event: 'stream-opened', n: 1 }, 'opened');
    p.event({ event: 'stream-closed', n: 1 }, 'closed');
    expect(out.writes).toEqual([]);
    await tick();
    expect(out.writes).toEqual(['{"event":"stream-opened","n":1}\n{"event":"stream-closed","n":1}\n']);
  });

  test('right after a write, lines wait for the pace and go out together; after a quiet pace, at the end of the turn', async () => {
    const out = spyOn(process.stdout);
    const p = new Printer(true, PACE);
    p.event({ event: 'a' }, 'a');
    await tick();
    const first = performance.now();
    expect(out.writes).toEqual(['{"event":"a"}\n']);
    p.event({ event: 'b' }, 'b');
    await tick();
    p.event({ event: 'c' }, 'c');
    await tick();
    expect(out.writes).toHaveLength(1); // b and c wait for the pace
    while (out.writes.length < 2 && performance.now() - first < 10 * PACE) await sleep(5);
    expect(performance.now() - first).toBeGreaterThanOrEqual(PACE - 2);
    expect(out.writes).toEqual(['{"event":"a"}\n', '{"event":"b"}\n{"event":"c"}\n']);
    await sleep(PACE + 10);
    p.event({ event: 'd' }, 'd');
    await tick();
    expect(out.writes[2]).toBe('{"event":"d"}\n');
  });

  test('text mode keeps notes in order with events; --json sends notes to stderr at once', async () => {
    const out = spyOn(process.stdout);
    const err = spyOn(process.stderr);
    const text = new Printer(false, PACE);
    text.event({ event: 'x' }, 'first');
    text.note('a note');
    await tick();
    expect(out.writes).toEqual(['first\na note\n']);
    const json = new Printer(true, PACE);
    json.note('remembered the host key');
    expect(err.writes).toEqual(['remembered the host key\n']);
  });

  test('flushAll and flush write what waits at once, also what waits for the pace, and only once', async () => {
    const out = spyOn(process.stdout);
    const p = new Printer(true, PACE);
    p.event({ event: 'stream-opened' }, 'opened');
    Printer.flushAll();
    expect(out.writes).toEqual(['{"event":"stream-opened"}\n']);
    Printer.flushAll();
    expect(out.writes).toHaveLength(1);
    p.event({ event: 'ready' }, 'ready'); // within the pace: a timer holds it
    p.flush();
    expect(out.writes).toEqual(['{"event":"stream-opened"}\n', '{"event":"ready"}\n']);
    await sleep(PACE + 10); // the cancelled timer writes nothing more
    expect(out.writes).toHaveLength(2);
  });
});

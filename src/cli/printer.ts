/**
 * Output for client commands: JSON lines on stdout with --json, readable text otherwise.
 *
 * Lines for stdout are written at the end of the event-loop turn, all of that turn's
 * in one write; right after a write, the next waits until PACE_MS have passed, so a
 * device's stream lines while a helper loads a page go out a few at a time. stdout to
 * a file, pipe or terminal is a synchronous write here: written at once, a device's
 * `stream-opened` line sat between the device's dial and its answer to the broker
 * (the answer is corked until the end of the tick, see transport/coalesce.ts), on
 * every new connection's way; and a write per line was a syscall per line (two per
 * stream on a device). What waits is written on exit and by `flushAll()`.
 */

/** Most time a line waits after the previous write. */
export const PACE_MS = 20;

export class Printer {
  private static readonly all = new Set<Printer>();
  private pending = '';
  /** The flush that waits: at the end of this turn, or after the pace. */
  private immediate: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastWrite = -Infinity;

  constructor(private readonly json: boolean, private readonly paceMs = PACE_MS) {
    if (Printer.all.size === 0) process.once('exit', () => Printer.flushAll());
    Printer.all.add(this);
  }

  /** Write what every printer holds (before output that bypasses them, and on exit). */
  static flushAll(): void {
    for (const p of Printer.all) p.flush();
  }

  /** An event: the object as a JSON line, or its text. */
  event(obj: object, text: string): void {
    this.print(this.json ? JSON.stringify(obj) : text);
  }

  /** Informational text (stderr with --json, so stdout stays parseable). */
  note(text: string): void {
    if (this.json) process.stderr.write(`${text}\n`);
    else this.print(text);
  }

  /** Write what waits now (also a line someone waits for: the session code, `ready`). */
  flush(): void {
    clearImmediate(this.immediate);
    clearTimeout(this.timer);
    this.immediate = undefined;
    this.timer = undefined;
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    this.lastWrite = performance.now();
    process.stdout.write(text);
  }

  private print(line: string): void {
    this.pending += `${line}\n`;
    if (this.immediate || this.timer) return;
    const wait = this.lastWrite + this.paceMs - performance.now();
    if (wait <= 0) this.immediate = setImmediate(() => this.flush());
    else this.timer = setTimeout(() => this.flush(), wait).unref(); // on exit, flushAll writes what waits
  }
}

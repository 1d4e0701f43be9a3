/**
 * Output for client commands: JSON lines on stdout with --json, readable text otherwise.
 *
 * Lines for stdout are written at the end of the event-loop turn, all of that turn's
 * in one write, and on exit. stdout to a file, pipe or terminal is a synchronous
 * write here: written at once, a device's `stream-opened` line sat between the
 * device's dial and its answer to the broker (the answer is corked until the end of
 * the tick, see transport/coalesce.ts), on every new connection's way.
 */
export class Printer {
  private static readonly all = new Set<Printer>();
  private pending = '';
  private scheduled = false;

  constructor(private readonly json: boolean) {
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

  /** Write what waits now. */
  flush(): void {
    this.scheduled = false;
    if (this.pending === '') return;
    const text = this.pending;
    this.pending = '';
    process.stdout.write(text);
  }

  private print(line: string): void {
    this.pending += `${line}\n`;
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }
}

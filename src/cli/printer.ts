/** Output for client commands: JSON lines on stdout with --json, readable text otherwise. */
export class Printer {
  constructor(private readonly json: boolean) {}

  /** An event: the object as a JSON line, or its text. */
  event(obj: object, text: string): void {
    if (this.json) process.stdout.write(`${JSON.stringify(obj)}\n`);
    else process.stdout.write(`${text}\n`);
  }

  /** Informational text (stderr with --json, so stdout stays parseable). */
  note(text: string): void {
    (this.json ? process.stderr : process.stdout).write(`${text}\n`);
  }
}

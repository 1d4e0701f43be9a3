/**
 * Logging: one winston logger per process, child loggers per scope
 * (`broker › session h3k9… › chan#12`), JSON or pretty. Logs go to stderr so that
 * stdout stays free for machine-readable events (`--json`) and the listening line.
 *
 * Below info, winston is loaded with the first message that passes the level, not at
 * startup: a helper or a device logs nothing at its default level (warn) while all is
 * well, and loading winston and its formats took ~45 ms of every `broker-agent` start
 * here. At info and debug it is loaded at once.
 */
import type winston from 'winston';

export type LogFormat = 'json' | 'pretty';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** winston's npm levels that we use, most severe first (a logger at level L emits ranks <= L's). */
const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** The narrow logger interface the code depends on (easy to fake in tests). */
export interface Logger {
  error(msg: string, meta?: Record<string, unknown>): void;
  warn(msg: string, meta?: Record<string, unknown>): void;
  info(msg: string, meta?: Record<string, unknown>): void;
  debug(msg: string, meta?: Record<string, unknown>): void;
  /** A child logger whose scope is appended to this one's (`a › b`). */
  child(scope: string, meta?: Record<string, unknown>): Logger;
}

/**
 * Levels are checked here, before winston: a message below the level would
 * otherwise still go through winston's object stream before being dropped (5 % of
 * a device agent's CPU per connection, for the `stream opened` line it never prints).
 * The winston logger (and a child's) is made when the first message passes.
 */
class WinstonLogger implements Logger {
  private made?: winston.Logger;
  /** `rank`: the highest RANK emitted (-1 when silent). `make` is dropped once used (it holds the parent and the meta). */
  constructor(private make: (() => winston.Logger) | undefined, private readonly rank: number, private readonly scope: string) {}
  private get w(): winston.Logger {
    if (!this.made) {
      this.made = this.make!();
      this.make = undefined;
    }
    return this.made;
  }
  error(msg: string, meta?: Record<string, unknown>): void { if (this.rank >= RANK.error) this.w.error(msg, meta); }
  warn(msg: string, meta?: Record<string, unknown>): void { if (this.rank >= RANK.warn) this.w.warn(msg, meta); }
  info(msg: string, meta?: Record<string, unknown>): void { if (this.rank >= RANK.info) this.w.info(msg, meta); }
  debug(msg: string, meta?: Record<string, unknown>): void { if (this.rank >= RANK.debug) this.w.debug(msg, meta); }
  child(scope: string, meta?: Record<string, unknown>): Logger {
    const full = this.scope ? `${this.scope} › ${scope}` : scope;
    return new WinstonLogger(() => this.w.child({ ...meta, scope: full }), this.rank, full);
  }
}

/** Local `HH:mm:ss.SSS` (a format string would go through fecha: 1.6 % of a busy agent's CPU). */
function clockTime(): string {
  const d = new Date();
  const two = (n: number) => (n < 10 ? `0${n}` : String(n));
  const ms = d.getMilliseconds();
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${ms < 10 ? `00${ms}` : ms < 100 ? `0${ms}` : ms}`;
}

/** triple-beam's key for the finished line (`Symbol.for`, so no import of winston's internals). */
const MESSAGE = Symbol.for('message');

/**
 * One JSON line: the timestamp and the native `JSON.stringify`, with logform's safe
 * stringify only for what that cannot write (cycles, BigInt). `timestamp()` + `json()`
 * cost 9.8 µs a line against 5.1 µs here, and the broker writes one per stream.
 */
function jsonLine(w: typeof winston): winston.Logform.Format {
  const safeJson = w.format.json();
  return w.format((info) => {
    info.timestamp = new Date().toISOString();
    try {
      (info as unknown as Record<symbol, string>)[MESSAGE] = JSON.stringify(info);
      return info;
    } catch {
      return safeJson.transform(info, {});
    }
  })();
}

/** Create the process logger. Output goes to stderr unless `stream` says otherwise (stdout is reserved for events). */
export function createLogger(opts: { format?: LogFormat; level?: LogLevel; scope?: string; silent?: boolean; stream?: NodeJS.WritableStream } = {}): Logger {
  const format = opts.format ?? 'pretty';
  const level = opts.level ?? 'info';
  const make = (): winston.Logger => {
    const w = require('winston') as typeof winston;
    const root = w.createLogger({
      level,
      format:
        format === 'json'
          ? jsonLine(w)
          : w.format.combine(
              w.format.timestamp({ format: clockTime }),
              w.format.printf((info) => {
                const { level, message, timestamp, scope, ...rest } = info as Record<string, unknown>;
                const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
                return `${String(timestamp)} ${String(level).padEnd(5)} ${scope ? `${String(scope)}: ` : ''}${String(message)}${extra}`;
              }),
            ),
      transports: [new w.transports.Stream({ stream: opts.stream ?? process.stderr })],
    });
    // The scope is a child's meta, not defaultMeta: winston lets defaultMeta override a child's own scope.
    return opts.scope ? root.child({ scope: opts.scope }) : root;
  };
  const rank = opts.silent ? -1 : RANK[level];
  // At info and debug (the broker's default) messages come with every session: winston
  // now, not inside the first session's handling.
  if (rank >= RANK.info) {
    const root = make();
    return new WinstonLogger(() => root, rank, opts.scope ?? '');
  }
  return new WinstonLogger(make, rank, opts.scope ?? '');
}

/** A logger that drops everything (library default when the caller passes none). */
export const silentLogger: Logger = {
  error() {}, warn() {}, info() {}, debug() {},
  child() { return silentLogger; },
};

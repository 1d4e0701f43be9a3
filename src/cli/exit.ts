/**
 * The only place that prints a fatal error and picks an exit code. Library code
 * throws BrokerError; this turns it into one line on stderr (or a JSON event).
 */
import { BrokerError, describeError, type BrokerErrorCode } from '../errors';
import { Printer } from './printer';

/** Exit codes, documented in the README. */
export const ExitCode = {
  OK: 0,
  /** The session ended or the connection was lost. */
  SESSION_ENDED: 1,
  /** Bad flags or input. */
  USAGE: 2,
  /** The broker refused us: wrong code, auth, rate limit, full. */
  REFUSED: 3,
  /** Could not reach or trust the broker. */
  UNREACHABLE: 4,
  INTERNAL: 70,
} as const;

const BY_CODE: Partial<Record<BrokerErrorCode, number>> = {
  BRK_BAD_OPTION: ExitCode.USAGE,
  BRK_BAD_DESCRIPTOR: ExitCode.USAGE,
  BRK_BAD_TARGET: ExitCode.USAGE,
  BRK_BAD_CODE: ExitCode.REFUSED,
  BRK_AUTH_FAILED: ExitCode.REFUSED,
  BRK_RATE_LIMITED: ExitCode.REFUSED,
  BRK_SESSION_FULL: ExitCode.REFUSED,
  BRK_BROKER_UNREACHABLE: ExitCode.UNREACHABLE,
  BRK_HOST_KEY_MISMATCH: ExitCode.UNREACHABLE,
  BRK_SESSION_ENDED: ExitCode.SESSION_ENDED,
  BRK_TIMEOUT: ExitCode.UNREACHABLE,
};

/** Exit code for an error. */
export function exitCodeFor(err: unknown): number {
  return err instanceof BrokerError ? (BY_CODE[err.code] ?? ExitCode.INTERNAL) : ExitCode.INTERNAL;
}

/** Print the error (one line, or a JSON `error` event) and exit. */
export function fail(prog: string, err: unknown, json = false): never {
  const code = err instanceof BrokerError ? err.code : 'BRK_INTERNAL';
  const message = describeError(err);
  Printer.flushAll();
  if (json) process.stdout.write(`${JSON.stringify({ event: 'error', code, message })}\n`);
  process.stderr.write(`${prog}: ${message} [${code}]\n`);
  process.exit(exitCodeFor(err));
}

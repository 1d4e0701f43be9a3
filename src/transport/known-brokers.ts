/**
 * Host-key pinning for clients (agent and helper). Either the user pins the
 * broker's fingerprint with `--fingerprint SHA256:…`, or the first key a broker
 * presents is recorded in a known-brokers file (trust on first use) and any later
 * change is refused loudly, like OpenSSH's known_hosts.
 *
 * File format, one broker per line: `HOST:PORT SHA256:<base64>`; `#` starts a
 * comment; lines that do not parse are ignored (and preserved on rewrite).
 */
import * as fs from 'node:fs';
import { writePrivateTemp } from './private-file';
import * as os from 'node:os';
import * as path from 'node:path';
import { BrokerError, describeError } from '../errors';
import { fingerprintOf } from './keys';

/**
 * Where clients record broker host keys when the user did not name a file:
 * `$XDG_CONFIG_HOME/remote-assist/known_brokers`, else
 * `~/.config/remote-assist/known_brokers`. A relative XDG_CONFIG_HOME is ignored,
 * as the XDG spec requires.
 */
export function defaultKnownBrokersFile(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.config');
  return path.join(base, 'remote-assist', 'known_brokers');
}

/**
 * Canonical form of a user-supplied SHA256 fingerprint: trimmed, `SHA256:` prefix
 * optional (any case), trailing `=` padding dropped; the base64 body is compared
 * case-sensitively and must be exactly 43 characters (a SHA-256 digest), so a
 * truncated paste is caught instead of never matching. Returns undefined if the
 * input is not such a fingerprint.
 */
export function normalizeFingerprint(input: string): string | undefined {
  if (typeof input !== 'string' || input.length > 200) return undefined;
  let body = input.trim();
  if (/^sha256:/i.test(body)) body = body.slice('sha256:'.length);
  body = body.replace(/=+$/, '');
  return /^[A-Za-z0-9+/]{43}$/.test(body) ? `SHA256:${body}` : undefined;
}

/** Canonical broker key for the file: trimmed, lower-case (host names are case-insensitive). */
function normalizeBroker(broker: string): string {
  const b = broker.trim().toLowerCase();
  if (!b || /\s/.test(b) || b.startsWith('#')) {
    throw new BrokerError('BRK_BAD_OPTION', `invalid broker address ${JSON.stringify(broker)}; expected HOST:PORT`);
  }
  return b;
}

/** Parse one file line into [broker, fingerprint], or undefined for comments/junk. */
function parseLine(line: string): [string, string] | undefined {
  const trimmed = line.trim();
  if (!trimmed || trimmed.startsWith('#')) return undefined;
  const fields = trimmed.split(/\s+/);
  if (fields.length < 2 || (fields[2] !== undefined && !fields[2].startsWith('#'))) return undefined;
  const fp = normalizeFingerprint(fields[1]!);
  if (!fp || !fields[0]!.includes(':')) return undefined;
  return [fields[0]!.toLowerCase(), fp];
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? describeError(err);
}

/**
 * The known-brokers file. Reads the file on every lookup (several clients may
 * share it) and rewrites it atomically (temp file + rename, dir 0700, file 0600).
 */
export class KnownBrokers {
  /** @param file path of the known-brokers file; it need not exist yet. */
  constructor(readonly file: string) {}

  /** All lines, or [] if the file does not exist. BRK_BAD_OPTION if it exists but cannot be read. */
  private readLines(): string[] {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new BrokerError('BRK_BAD_OPTION', `cannot read known-brokers file ${this.file} (${errnoOf(err)}); fix its permissions or pass --fingerprint`, { cause: err });
    }
    const lines = text.split(/\r?\n/);
    if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    return lines;
  }

  /**
   * The recorded fingerprint for `broker` ('host:port'), or undefined if none.
   * If the file (unusually) lists a broker twice, the first valid line wins.
   *
   * @throws BrokerError BRK_BAD_OPTION if the file exists but is unreadable.
   */
  lookup(broker: string): string | undefined {
    const want = normalizeBroker(broker);
    for (const line of this.readLines()) {
      const entry = parseLine(line);
      if (entry && entry[0] === want) return entry[1];
    }
    return undefined;
  }

  /**
   * Record (or replace) the fingerprint for `broker`. Other lines, comments and
   * junk included, are kept as they were.
   *
   * @throws BrokerError BRK_BAD_OPTION on a malformed broker/fingerprint or an I/O failure.
   */
  remember(broker: string, fingerprint: string): void {
    const key = normalizeBroker(broker);
    const fp = normalizeFingerprint(fingerprint);
    if (!fp) throw new BrokerError('BRK_BAD_OPTION', `invalid host key fingerprint ${JSON.stringify(fingerprint)}; expected SHA256:<base64>`);

    const existing = this.readLines();
    const kept = existing.filter((line) => parseLine(line)?.[0] !== key);
    if (existing.length === 0) {
      kept.push('# remote-assist known brokers: HOST:PORT SHA256:<host key fingerprint>');
    }
    kept.push(`${key} ${fp}`);
    this.writeAtomically(kept.join('\n') + '\n');
  }

  private writeAtomically(data: string): void {
    let target = this.file;
    try {
      target = fs.realpathSync(this.file); // write through a symlinked file
    } catch {
      /* does not exist yet */
    }
    const dir = path.dirname(target);
    let tmp = '';
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      tmp = writePrivateTemp(target, data);
      fs.renameSync(tmp, target);
    } catch (err) {
      try {
        if (tmp) fs.unlinkSync(tmp);
      } catch {
        /* never created or already renamed */
      }
      throw new BrokerError('BRK_BAD_OPTION', `cannot write known-brokers file ${this.file} (${errnoOf(err)}); fix its permissions, set XDG_CONFIG_HOME, or pass --fingerprint`, { cause: err });
    }
  }
}

/** Options of {@link createHostKeyVerifier}. */
export interface HostKeyVerifierOptions {
  /** The broker as the user named it, 'host:port' (the known-brokers key). */
  broker: string;
  /** `--fingerprint`: if set, only this key is accepted and the file is not used. */
  fingerprint?: string;
  /** Known-brokers file; defaults to {@link defaultKnownBrokersFile}. */
  knownBrokersFile?: string;
  /** Called once when a broker's key is seen for the first time and recorded (for a log line). */
  onNewKey?: (fp: string) => void;
}

/**
 * Build an ssh2 `hostVerifier`. `verify` receives the raw host key blob and
 * returns whether to proceed; when it refuses, `error()` explains why as a
 * BrokerError (BRK_HOST_KEY_MISMATCH for a wrong key, BRK_BAD_OPTION when the
 * known-brokers file cannot be used) so the caller can report that instead of
 * ssh2's generic handshake failure. `verify` never throws.
 *
 * Policy: a pinned fingerprint accepts only that key; otherwise trust on first
 * use: unknown broker ⇒ record and accept, same key ⇒ accept, different key ⇒ refuse.
 *
 * @throws BrokerError BRK_BAD_OPTION immediately if `fingerprint` is not a SHA256 fingerprint.
 */
export function createHostKeyVerifier(opts: HostKeyVerifierOptions): {
  verify: (key: Buffer) => boolean;
  error: () => BrokerError | undefined;
} {
  let lastError: BrokerError | undefined;
  const pinned = opts.fingerprint === undefined ? undefined : normalizeFingerprint(opts.fingerprint);
  if (opts.fingerprint !== undefined && !pinned) {
    throw new BrokerError(
      'BRK_BAD_OPTION',
      `--fingerprint ${JSON.stringify(opts.fingerprint.slice(0, 80))} is not a host key fingerprint; expected SHA256:<43 base64 characters> as printed by the broker at startup`,
    );
  }
  const file = opts.knownBrokersFile ?? defaultKnownBrokersFile();

  const refuse = (err: BrokerError): boolean => {
    lastError = err;
    return false;
  };

  const verify = (key: Buffer): boolean => {
    if (!Buffer.isBuffer(key)) {
      return refuse(new BrokerError('BRK_INTERNAL', 'host key verifier expected the raw host key (do not set hostHash)'));
    }
    const presented = fingerprintOf(key);
    if (pinned) {
      if (presented === pinned) {
        lastError = undefined;
        return true;
      }
      return refuse(new BrokerError('BRK_HOST_KEY_MISMATCH', `broker ${opts.broker} presented host key ${presented}, expected ${pinned} (--fingerprint); refusing to connect`));
    }
    try {
      const known = new KnownBrokers(file);
      const recorded = known.lookup(opts.broker);
      if (recorded === undefined) {
        known.remember(opts.broker, presented);
        lastError = undefined;
        try {
          opts.onNewKey?.(presented);
        } catch {
          /* a logging callback must not decide whether we connect */
        }
        return true;
      }
      if (recorded === presented) {
        lastError = undefined;
        return true;
      }
      return refuse(
        new BrokerError(
          'BRK_HOST_KEY_MISMATCH',
          `broker ${opts.broker} presented host key ${presented} but ${recorded} was recorded in ${file}; if the broker's key really changed, check with its operator and remove that line (or pass --fingerprint ${presented})`,
        ),
      );
    } catch (err) {
      return refuse(err instanceof BrokerError ? err : new BrokerError('BRK_INTERNAL', `host key check failed: ${describeError(err)}`, { cause: err }));
    }
  };

  return { verify, error: () => lastError };
}

/**
 * SSH key material: client identities (agent and helper keys), the broker's
 * persistent host key, and OpenSSH-compatible fingerprints.
 *
 * Private keys never leave this module in error messages or logs; errors name
 * the file and the fix, never the contents.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { writePrivateTemp } from './private-file';
import * as path from 'node:path';
import { utils as sshUtils } from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { BrokerError, describeError } from '../errors';

/**
 * A client's SSH identity. `publicKey` is what a device operator pastes into an
 * allow-list; `fingerprint` is what humans compare and what the broker logs.
 */
export interface Identity {
  /** Private key as text (OpenSSH `-----BEGIN OPENSSH PRIVATE KEY-----` or PEM). */
  privateKey: string;
  /** One authorized_keys-style line: `ssh-ed25519 AAAA... comment`. */
  publicKey: string;
  /** `SHA256:<base64 without padding>`, exactly as `ssh-keygen -l` prints it. */
  fingerprint: string;
}

/** File name of the broker host key inside its data directory. */
export const HOST_KEY_FILE = 'host_ed25519';

/** Attempts before giving up on ssh2's generator (it fails ~1 in 300 times). */
const GENERATE_ATTEMPTS = 8;

/** A private key file bigger than this is not a key; refuse before reading it all. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

/**
 * Parse key text with ssh2: the key, or the Error ssh2 reports when it would not
 * accept it. Never throws; tolerates a (historical) array result.
 */
function parse(data: Buffer | string): ParsedKey | Error {
  let parsed: unknown;
  try {
    parsed = sshUtils.parseKey(data);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
  if (Array.isArray(parsed)) parsed = parsed[0];
  if (parsed instanceof Error) return parsed;
  if (!parsed || typeof (parsed as ParsedKey).getPublicSSH !== 'function') return new Error('Unsupported key format');
  return parsed as ParsedKey;
}

/** Build the `type base64 comment` public key line for a parsed key. */
function publicLine(key: ParsedKey, comment: string): string {
  const b64 = key.getPublicSSH().toString('base64');
  const c = comment.replace(/[\r\n]+/g, ' ').trim();
  return c ? `${key.type} ${b64} ${c}` : `${key.type} ${b64}`;
}

/**
 * Generate a fresh ed25519 identity. Every key returned has been re-parsed by
 * ssh2 (which will later have to load it) and its public half round-trips; ssh2's
 * generator occasionally emits a key its own parser rejects, so such keys are
 * discarded and regenerated a bounded number of times.
 *
 * @throws BrokerError BRK_INTERNAL if no usable key came out after several attempts.
 */
export function generateIdentity(comment?: string): Identity {
  let lastProblem = 'unknown';
  for (let attempt = 0; attempt < GENERATE_ATTEMPTS; attempt++) {
    const pair = comment
      ? sshUtils.generateKeyPairSync('ed25519', { comment })
      : sshUtils.generateKeyPairSync('ed25519');
    const priv = parse(pair.private);
    if (priv instanceof Error) {
      lastProblem = priv.message;
      continue;
    }
    const pub = parse(pair.public);
    if (pub instanceof Error) {
      lastProblem = pub.message;
      continue;
    }
    if (!priv.isPrivateKey() || !priv.getPublicSSH().equals(pub.getPublicSSH())) {
      lastProblem = 'public key does not match private key';
      continue;
    }
    return { privateKey: pair.private, publicKey: pair.public.trim(), fingerprint: fingerprintOf(pub) };
  }
  throw new BrokerError('BRK_INTERNAL', `could not generate a usable ed25519 key after ${GENERATE_ATTEMPTS} attempts (${lastProblem})`);
}

/** True when a parse error (or the file text) says the key is passphrase-protected. */
function looksEncrypted(text: string, err: Error): boolean {
  if (/encrypted|passphrase/i.test(err.message)) return true;
  return /Proc-Type:\s*4,ENCRYPTED|BEGIN ENCRYPTED PRIVATE KEY/.test(text);
}

/**
 * Load a private key file as an Identity (for `--identity FILE`).
 *
 * Contract: returns only keys ssh2 can authenticate with. Every failure is a
 * BrokerError('BRK_BAD_OPTION') whose one-line message names the file and says
 * what to do: not found, unreadable, passphrase-protected (unsupported: the
 * agent runs unattended), or not a private key at all.
 */
export function loadIdentity(file: string): Identity {
  let text: string;
  try {
    const st = fs.statSync(file);
    if (st.isDirectory()) {
      throw new BrokerError('BRK_BAD_OPTION', `identity file ${file} is a directory, not a private key file; pass the key file itself or omit --identity`);
    }
    if (st.size > MAX_KEY_FILE_BYTES) {
      throw new BrokerError('BRK_BAD_OPTION', `identity file ${file} is not an SSH private key (${st.size} bytes is far too large); pass an OpenSSH private key or omit --identity`);
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof BrokerError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new BrokerError('BRK_BAD_OPTION', `identity file ${file} not found; check the path or omit --identity to use a generated key`, { cause: err });
    }
    throw new BrokerError('BRK_BAD_OPTION', `identity file ${file} is unreadable (${code ?? describeError(err)}); check its permissions or omit --identity`, { cause: err });
  }

  const parsed = parse(text);
  if (parsed instanceof Error) {
    if (looksEncrypted(text, parsed)) {
      throw new BrokerError(
        'BRK_BAD_OPTION',
        `identity file ${file} is encrypted; encrypted keys are not supported: remove the passphrase with ssh-keygen -p -N '' -f ${file} or omit --identity`,
      );
    }
    throw new BrokerError('BRK_BAD_OPTION', `identity file ${file} is not an SSH private key (${parsed.message}); pass an OpenSSH private key file or omit --identity`);
  }
  if (!parsed.isPrivateKey()) {
    throw new BrokerError('BRK_BAD_OPTION', `identity file ${file} is a public key, not a private key; pass the private key file (without .pub) or omit --identity`);
  }
  return {
    privateKey: text.trim() + '\n',
    publicKey: publicLine(parsed, parsed.comment ?? ''),
    fingerprint: fingerprintOf(parsed),
  };
}

/** Extract the wire-format public key blob from an `authorized_keys`-style line, if it is one. */
function blobFromPublicLine(line: string): Buffer | undefined {
  const m = /^\s*([a-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s|$)/i.exec(line);
  if (!m) return undefined;
  const blob = Buffer.from(m[2]!, 'base64');
  if (blob.length < 4) return undefined;
  const typeLen = blob.readUInt32BE(0);
  if (4 + typeLen > blob.length) return undefined;
  if (blob.subarray(4, 4 + typeLen).toString('latin1') !== m[1]) return undefined;
  return blob;
}

/**
 * OpenSSH SHA256 fingerprint, `SHA256:<base64 without '=' padding>`, identical to
 * what `ssh-keygen -lf` prints, so users can compare it with tools they trust.
 *
 * Accepts: a Buffer holding the raw wire-format public key blob (what ssh2 hands a
 * `hostVerifier`), an `ssh-ed25519 AAAA… comment` line, private key text, or a
 * ParsedKey.
 *
 * @throws BrokerError BRK_BAD_OPTION if a string is not a key.
 */
export function fingerprintOf(publicKey: Buffer | string | ParsedKey): string {
  let blob: Buffer;
  if (Buffer.isBuffer(publicKey)) {
    blob = publicKey;
  } else if (typeof publicKey === 'string') {
    const fromLine = blobFromPublicLine(publicKey);
    if (fromLine) {
      blob = fromLine;
    } else {
      const parsed = parse(publicKey);
      if (parsed instanceof Error) {
        throw new BrokerError('BRK_BAD_OPTION', `not an SSH key (${parsed.message})`);
      }
      blob = parsed.getPublicSSH();
    }
  } else {
    blob = publicKey.getPublicSSH();
  }
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** Write `data` to `file` atomically: temp file (mode 0600) in the same dir, fsync, then link/rename. */
function writeNewFileAtomically(file: string, data: string): 'written' | 'exists' {
  const tmp = writePrivateTemp(file, data);
  try {
    // link() refuses to replace an existing file, so two brokers starting at once
    // on the same data dir end up with one key rather than silently different ones.
    fs.linkSync(tmp, file);
    return 'written';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return 'exists';
    // Filesystems without hard links: fall back to rename (still atomic).
    fs.renameSync(tmp, file);
    return 'written';
  } finally {
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* already renamed */
    }
  }
}

/** Read and validate an existing host key file; BRK_BAD_OPTION naming the file if unusable. */
function readHostKey(file: string): { privateKey: string; fingerprint: string } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new BrokerError('BRK_BAD_OPTION', `broker host key ${file} is unreadable (${(err as NodeJS.ErrnoException).code ?? describeError(err)}); fix its permissions`, { cause: err });
  }
  const parsed = parse(text);
  if (parsed instanceof Error || !parsed.isPrivateKey()) {
    throw new BrokerError(
      'BRK_BAD_OPTION',
      `broker host key ${file} is not a usable unencrypted SSH private key; restore it from backup, or move it away to generate a new one (clients that pinned the old key will refuse the new one)`,
    );
  }
  return { privateKey: text, fingerprint: fingerprintOf(parsed) };
}

/**
 * The broker's persistent host key at `<dataDir>/host_ed25519`. Clients pin its
 * fingerprint, so it must survive restarts: created once (ed25519, dir 0700, file
 * 0600, written atomically), then reused. `created` tells the caller to log the
 * new fingerprint for the operator to publish.
 *
 * @throws BrokerError BRK_BAD_OPTION when an existing file cannot be used (named in the message);
 *   never overwrites it.
 */
export function loadOrCreateHostKey(dataDir: string): { privateKey: string; fingerprint: string; created: boolean } {
  const file = path.join(dataDir, HOST_KEY_FILE);
  if (fs.existsSync(file)) return { ...readHostKey(file), created: false };

  try {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new BrokerError('BRK_BAD_OPTION', `cannot create broker data directory ${dataDir} (${(err as NodeJS.ErrnoException).code ?? describeError(err)}); pass a writable --data-dir`, { cause: err });
  }
  const id = generateIdentity('remote-assist-broker host key');
  let outcome: 'written' | 'exists';
  try {
    outcome = writeNewFileAtomically(file, id.privateKey);
  } catch (err) {
    throw new BrokerError('BRK_BAD_OPTION', `cannot write broker host key ${file} (${(err as NodeJS.ErrnoException).code ?? describeError(err)}); pass a writable --data-dir`, { cause: err });
  }
  if (outcome === 'exists') return { ...readHostKey(file), created: false };
  return { privateKey: id.privateKey, fingerprint: id.fingerprint, created: true };
}

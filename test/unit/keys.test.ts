import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import fsModule = require('node:fs');
import * as os from 'node:os';
import * as path from 'node:path';
import * as ssh2 from 'ssh2';
import { BrokerError } from '../../src/errors';
import { fingerprintOf, generateIdentity, HOST_KEY_FILE, loadIdentity, loadOrCreateHostKey } from '../../src/transport/keys';

const SSH_KEYGEN = '/usr/bin/ssh-keygen';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keys-test-'));
});
afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

function keygen(args: string[]): string {
  return execFileSync(SSH_KEYGEN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `ssh-keygen -lf FILE` → 'SHA256:...' */
function keygenFingerprint(file: string): string {
  const out = keygen(['-lf', file]).trim();
  const fp = out.split(/\s+/)[1]!;
  expect(fp).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  return fp;
}

function makeKey(name: string, extra: string[] = ['-t', 'ed25519'], passphrase = ''): string {
  const file = path.join(dir, name);
  keygen(['-q', ...extra, '-N', passphrase, '-C', `${name}@test`, '-f', file]);
  return file;
}

function expectBrokerError(fn: () => unknown, code: string, ...patterns: RegExp[]): BrokerError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(BrokerError);
  const e = caught as BrokerError;
  expect(e.code).toBe(code);
  expect(e.message).not.toContain('\n');
  for (const p of patterns) expect(e.message).toMatch(p);
  return e;
}

describe('fingerprintOf', () => {
  test('matches ssh-keygen -lf for an ed25519 key, whatever form the key is given in', () => {
    const file = makeKey('ed');
    const expected = keygenFingerprint(file);
    const pubLine = fs.readFileSync(`${file}.pub`, 'utf8');
    const parsed = ssh2.utils.parseKey(pubLine);
    if (parsed instanceof Error) throw parsed;

    expect(fingerprintOf(pubLine)).toBe(expected);
    expect(fingerprintOf(pubLine.trim().split(' ').slice(0, 2).join(' '))).toBe(expected); // no comment
    expect(fingerprintOf(parsed)).toBe(expected);
    expect(fingerprintOf(parsed.getPublicSSH())).toBe(expected); // raw blob, as a hostVerifier sees it
    expect(fingerprintOf(fs.readFileSync(file, 'utf8'))).toBe(expected); // private key text
    expect(expected.endsWith('=')).toBe(false);
  });

  test('matches ssh-keygen -lf for RSA and ECDSA keys too', () => {
    for (const [name, args] of [
      ['rsa', ['-t', 'rsa', '-b', '2048']],
      ['ecdsa', ['-t', 'ecdsa', '-b', '256']],
    ] as const) {
      const file = makeKey(name, [...args]);
      const expected = keygenFingerprint(file);
      expect(fingerprintOf(fs.readFileSync(`${file}.pub`, 'utf8'))).toBe(expected);
    }
  });

  test('different keys have different fingerprints', () => {
    const a = fs.readFileSync(`${makeKey('a')}.pub`, 'utf8');
    const b = fs.readFileSync(`${makeKey('b')}.pub`, 'utf8');
    expect(fingerprintOf(a)).not.toBe(fingerprintOf(b));
  });

  test('a string that is not a key is a BRK_BAD_OPTION', () => {
    expectBrokerError(() => fingerprintOf('hello world'), 'BRK_BAD_OPTION', /not an SSH key/);
    expectBrokerError(() => fingerprintOf(''), 'BRK_BAD_OPTION');
  });
});

describe('generateIdentity', () => {
  test('produces an ed25519 identity that ssh-keygen accepts and agrees with', () => {
    for (let i = 0; i < 5; i++) {
      const id = generateIdentity(`helper-${i}`);
      expect(id.privateKey).toContain('-----BEGIN OPENSSH PRIVATE KEY-----');
      expect(id.publicKey).toMatch(new RegExp(`^ssh-ed25519 AAAA[A-Za-z0-9+/]+=* helper-${i}$`));

      const file = path.join(dir, `gen${i}`);
      fs.writeFileSync(file, id.privateKey, { mode: 0o600 });
      // ssh-keygen -y derives the public key from the private one: it must parse it and agree.
      const derived = keygen(['-y', '-f', file]).trim();
      expect(derived.split(' ').slice(0, 2).join(' ')).toBe(id.publicKey.split(' ').slice(0, 2).join(' '));
      expect(keygenFingerprint(file)).toBe(id.fingerprint);
    }
  });

  test('works without a comment', () => {
    const id = generateIdentity();
    expect(id.publicKey).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/]+=*$/);
  });

  test('every generated key is accepted by ssh2 (ssh2 itself fails ~1 in 300)', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const id = generateIdentity('x');
      const parsed = ssh2.utils.parseKey(id.privateKey);
      expect(parsed).not.toBeInstanceOf(Error);
      expect(fingerprintOf(parsed as ssh2.ParsedKey)).toBe(id.fingerprint);
      seen.add(id.fingerprint);
    }
    expect(seen.size).toBe(600);
  });

  test('regenerates when ssh2 produces a key it cannot parse back', () => {
    const real = ssh2.utils.generateKeyPairSync;
    const spy = jest.spyOn(ssh2.utils, 'generateKeyPairSync');
    spy.mockImplementationOnce(() => ({
      private: '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n',
      public: 'ssh-ed25519 AAAA',
    }));
    // second attempt: a valid private key paired with someone else's public key
    const other = real('ed25519');
    spy.mockImplementationOnce((...args: unknown[]) => {
      const good = (real as (...a: unknown[]) => { private: string; public: string })(...args);
      return { private: good.private, public: other.public };
    });
    const id = generateIdentity('retry');
    expect(spy).toHaveBeenCalledTimes(3);
    const parsed = ssh2.utils.parseKey(id.privateKey) as ssh2.ParsedKey;
    expect(fingerprintOf(parsed)).toBe(id.fingerprint);
    expect(fingerprintOf(id.publicKey)).toBe(id.fingerprint);
    expect(id.fingerprint).not.toBe(fingerprintOf(other.public));
  });

  test('gives up with BRK_INTERNAL after bounded retries', () => {
    const spy = jest.spyOn(ssh2.utils, 'generateKeyPairSync').mockImplementation(() => ({ private: 'junk', public: 'junk' }));
    expectBrokerError(() => generateIdentity(), 'BRK_INTERNAL', /ed25519/);
    expect(spy.mock.calls.length).toBeGreaterThan(1);
    expect(spy.mock.calls.length).toBeLessThanOrEqual(20);
  });
});

describe('loadIdentity', () => {
  test('loads an ssh-keygen ed25519 key', () => {
    const file = makeKey('id_ed25519');
    const id = loadIdentity(file);
    expect(id.fingerprint).toBe(keygenFingerprint(file));
    expect(id.publicKey).toBe(fs.readFileSync(`${file}.pub`, 'utf8').trim());
    expect(ssh2.utils.parseKey(id.privateKey)).not.toBeInstanceOf(Error);
  });

  test('loads an unencrypted PEM RSA key', () => {
    const file = makeKey('id_rsa', ['-t', 'rsa', '-b', '2048', '-m', 'PEM']);
    expect(fs.readFileSync(file, 'utf8')).toContain('BEGIN RSA PRIVATE KEY');
    const id = loadIdentity(file);
    expect(id.fingerprint).toBe(keygenFingerprint(file));
    expect(id.publicKey.startsWith('ssh-rsa AAAA')).toBe(true);
  });

  test('missing file', () => {
    const file = path.join(dir, 'nope');
    expectBrokerError(() => loadIdentity(file), 'BRK_BAD_OPTION', /not found/, new RegExp(file), /--identity/);
  });

  test('a directory', () => {
    expectBrokerError(() => loadIdentity(dir), 'BRK_BAD_OPTION', /directory/, /--identity/);
  });

  test('unreadable file', () => {
    const file = makeKey('locked');
    // (running as root makes chmod 000 useless, so simulate the failure on the real fs module)
    jest.spyOn(fsModule, 'readFileSync').mockImplementation(() => {
      throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    });
    expectBrokerError(() => loadIdentity(file), 'BRK_BAD_OPTION', /unreadable/, /EACCES/, new RegExp(file));
  });

  test('passphrase-protected OpenSSH key names the fix', () => {
    const file = makeKey('enc', ['-t', 'ed25519'], 'correct horse');
    const e = expectBrokerError(() => loadIdentity(file), 'BRK_BAD_OPTION', /encrypted keys are not supported/, /omit --identity/);
    expect(e.message).toContain(`ssh-keygen -p -N '' -f ${file}`);
  });

  test('passphrase-protected PEM key names the fix', () => {
    const file = makeKey('encpem', ['-t', 'rsa', '-b', '2048', '-m', 'PEM'], 'correct horse');
    expectBrokerError(() => loadIdentity(file), 'BRK_BAD_OPTION', /encrypted/, /ssh-keygen -p -N ''/);
  });

  test('a public key file is refused', () => {
    const file = `${makeKey('pub')}.pub`;
    expectBrokerError(() => loadIdentity(file), 'BRK_BAD_OPTION', /public key, not a private key/, new RegExp(file));
  });

  test('garbage is not a private key, and the message does not echo the contents', () => {
    const file = path.join(dir, 'garbage');
    fs.writeFileSync(file, 'SECRET-LOOKING-CONTENT\n');
    const e = expectBrokerError(() => loadIdentity(file), 'BRK_BAD_OPTION', /not an SSH private key/, new RegExp(file));
    expect(e.message).not.toContain('SECRET-LOOKING-CONTENT');
  });

  test('a huge file is refused without being parsed', () => {
    const file = path.join(dir, 'huge');
    fs.writeFileSync(file, Buffer.alloc(1024 * 1024, 0x41));
    expectBrokerError(() => loadIdentity(file), 'BRK_BAD_OPTION', /not an SSH private key/);
  });
});

describe('loadOrCreateHostKey', () => {
  test('creates a key (dir 0700, file 0600) once and reuses it', () => {
    const dataDir = path.join(dir, 'a', 'b', 'data');
    const first = loadOrCreateHostKey(dataDir);
    expect(first.created).toBe(true);
    const file = path.join(dataDir, HOST_KEY_FILE);
    expect(fs.statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, 'utf8')).toBe(first.privateKey);
    expect(keygenFingerprint(file)).toBe(first.fingerprint);
    expect(keygen(['-y', '-f', file])).toMatch(/^ssh-ed25519 /);
    // no temp files left behind
    expect(fs.readdirSync(dataDir)).toEqual([HOST_KEY_FILE]);

    const second = loadOrCreateHostKey(dataDir);
    expect(second).toEqual({ privateKey: first.privateKey, fingerprint: first.fingerprint, created: false });
  });

  test('uses an existing operator-provided key as is', () => {
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    const src = makeKey('op');
    fs.copyFileSync(src, path.join(dataDir, HOST_KEY_FILE));
    const got = loadOrCreateHostKey(dataDir);
    expect(got.created).toBe(false);
    expect(got.fingerprint).toBe(keygenFingerprint(src));
  });

  test('refuses (and keeps) an unparsable key file, naming it', () => {
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    const file = path.join(dataDir, HOST_KEY_FILE);
    fs.writeFileSync(file, 'corrupted');
    expectBrokerError(() => loadOrCreateHostKey(dataDir), 'BRK_BAD_OPTION', new RegExp(file));
    expect(fs.readFileSync(file, 'utf8')).toBe('corrupted');
  });

  test('refuses a public key in place of the host key', () => {
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    fs.copyFileSync(`${makeKey('pubonly')}.pub`, path.join(dataDir, HOST_KEY_FILE));
    expectBrokerError(() => loadOrCreateHostKey(dataDir), 'BRK_BAD_OPTION', new RegExp(HOST_KEY_FILE));
  });

  test('a data dir that cannot be created is a BRK_BAD_OPTION', () => {
    const blocker = path.join(dir, 'file');
    fs.writeFileSync(blocker, 'x');
    expectBrokerError(() => loadOrCreateHostKey(path.join(blocker, 'sub')), 'BRK_BAD_OPTION', /data directory/);
  });

  test('the key works as an ssh2 server host key', () => {
    const { privateKey } = loadOrCreateHostKey(path.join(dir, 'd'));
    expect(() => new ssh2.Server({ hostKeys: [privateKey] }, () => undefined)).not.toThrow();
  });
});

import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Server } from 'ssh2';
import { BrokerError } from '../../src/errors';
import { fingerprintOf, generateIdentity } from '../../src/transport/keys';
import {
  createHostKeyVerifier,
  defaultKnownBrokersFile,
  KnownBrokers,
  normalizeFingerprint,
} from '../../src/transport/known-brokers';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'known-brokers-test-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A host key as ssh2 hands it to a hostVerifier: the raw public key blob. */
function hostKeyBlob(): { blob: Buffer; fp: string } {
  const id = generateIdentity();
  const blob = Buffer.from(id.publicKey.split(' ')[1]!, 'base64');
  return { blob, fp: id.fingerprint };
}

describe('defaultKnownBrokersFile', () => {
  test('uses XDG_CONFIG_HOME when absolute', () => {
    expect(defaultKnownBrokersFile({ XDG_CONFIG_HOME: '/x/cfg' })).toBe('/x/cfg/remote-assist/known_brokers');
  });
  test('falls back to ~/.config (also for a relative XDG_CONFIG_HOME)', () => {
    const expected = path.join(os.homedir(), '.config', 'remote-assist', 'known_brokers');
    expect(defaultKnownBrokersFile({})).toBe(expected);
    expect(defaultKnownBrokersFile({ XDG_CONFIG_HOME: '' })).toBe(expected);
    expect(defaultKnownBrokersFile({ XDG_CONFIG_HOME: 'rel/cfg' })).toBe(expected);
  });
});

describe('normalizeFingerprint', () => {
  const body = 'a'.repeat(42) + 'B';
  test.each([
    [`SHA256:${body}`, `SHA256:${body}`],
    [`  SHA256:${body}\n`, `SHA256:${body}`],
    [body, `SHA256:${body}`],
    [`sha256:${body}`, `SHA256:${body}`],
    [`SHA256:${body}=`, `SHA256:${body}`],
    [`SHA256:${body.slice(1)}`, undefined], // truncated paste
    [`SHA256:${body}x`, undefined],
    [`MD5:${body}`, undefined],
    ['', undefined],
    [`SHA256:${body.slice(0, 20)} ${body.slice(20)}`, undefined],
  ])('%j → %j', (input, expected) => {
    expect(normalizeFingerprint(input)).toBe(expected);
  });
});

describe('KnownBrokers', () => {
  test('lookup on a missing file is undefined; remember creates dir 0700 + file atomically', () => {
    const file = path.join(dir, 'cfg', 'remote-assist', 'known_brokers');
    const kb = new KnownBrokers(file);
    expect(kb.lookup('broker.example:2222')).toBeUndefined();
    const { fp } = hostKeyBlob();
    kb.remember('broker.example:2222', fp);
    expect(kb.lookup('broker.example:2222')).toBe(fp);
    expect(kb.lookup('BROKER.example:2222')).toBe(fp); // host names are case-insensitive
    expect(kb.lookup('broker.example:2223')).toBeUndefined();
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['known_brokers']); // no temp files left
    expect(fs.readFileSync(file, 'utf8')).toMatch(new RegExp(`^broker\\.example:2222 ${fp.replace(/[+/]/g, '\\$&')}$`, 'm'));
    // a second instance (another process) sees it
    expect(new KnownBrokers(file).lookup('broker.example:2222')).toBe(fp);
  });

  test('tolerates comments and junk, keeps them on rewrite, replaces the entry', () => {
    const file = path.join(dir, 'known_brokers');
    const a = hostKeyBlob().fp;
    const b = hostKeyBlob().fp;
    const c = hostKeyBlob().fp;
    fs.writeFileSync(
      file,
      [
        '# my brokers',
        '',
        'this is junk',
        'nofingerprint:22',
        `no-port ${a}`,
        `h1:22 SHA256:tooshort`,
        `h1:22 ${a}`,
        `h2:22 ${b}   # trailing comment`,
        `h3:22 ${c} extra-field`,
        '\u0000\u00ff binary junk',
      ].join('\n') + '\n',
    );
    const kb = new KnownBrokers(file);
    expect(kb.lookup('h1:22')).toBe(a);
    expect(kb.lookup('h2:22')).toBe(b);
    expect(kb.lookup('h3:22')).toBeUndefined();
    expect(kb.lookup('no-port')).toBeUndefined();

    kb.remember('h1:22', c);
    expect(kb.lookup('h1:22')).toBe(c);
    expect(kb.lookup('h2:22')).toBe(b);
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toContain('# my brokers\n');
    expect(text).toContain('this is junk\n');
    expect(text).not.toContain(`h1:22 ${a}`);
    expect(text.match(/^h1:22 SHA256:[A-Za-z0-9+/]{43}$/gm)).toEqual([`h1:22 ${c}`]);
    expect(text).toContain('h1:22 SHA256:tooshort\n'); // junk stays junk
  });

  test('accepts CRLF files', () => {
    const file = path.join(dir, 'known_brokers');
    const { fp } = hostKeyBlob();
    fs.writeFileSync(file, `# x\r\nh:1 ${fp}\r\n`);
    expect(new KnownBrokers(file).lookup('h:1')).toBe(fp);
  });

  test('writes through a symlinked file', () => {
    const real = path.join(dir, 'real_known');
    fs.writeFileSync(real, '# real\n');
    const link = path.join(dir, 'link_known');
    fs.symlinkSync(real, link);
    const { fp } = hostKeyBlob();
    new KnownBrokers(link).remember('h:1', fp);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(real, 'utf8')).toContain(`h:1 ${fp}`);
  });

  test('refuses malformed input to remember', () => {
    const kb = new KnownBrokers(path.join(dir, 'kb'));
    expect(() => kb.remember('h:1', 'not-a-fingerprint')).toThrow(BrokerError);
    expect(() => kb.remember('bad host:1', hostKeyBlob().fp)).toThrow(/invalid broker address/);
    expect(fs.existsSync(path.join(dir, 'kb'))).toBe(false);
  });

  test('an unreadable file (a directory here) is a BRK_BAD_OPTION naming it', () => {
    const file = path.join(dir, 'is-a-dir');
    fs.mkdirSync(file);
    const kb = new KnownBrokers(file);
    expect(() => kb.lookup('h:1')).toThrow(expect.objectContaining({ code: 'BRK_BAD_OPTION', message: expect.stringContaining(file) }));
  });
});

describe('createHostKeyVerifier', () => {
  test('trust on first use: records, accepts the same key, refuses a different one loudly', () => {
    const file = path.join(dir, 'kb', 'known_brokers');
    const first = hostKeyBlob();
    const seen: string[] = [];
    const v1 = createHostKeyVerifier({ broker: '127.0.0.1:2222', knownBrokersFile: file, onNewKey: (fp) => seen.push(fp) });
    expect(v1.verify(first.blob)).toBe(true);
    expect(v1.error()).toBeUndefined();
    expect(seen).toEqual([first.fp]);
    expect(new KnownBrokers(file).lookup('127.0.0.1:2222')).toBe(first.fp);

    const v2 = createHostKeyVerifier({ broker: '127.0.0.1:2222', knownBrokersFile: file, onNewKey: (fp) => seen.push(fp) });
    expect(v2.verify(first.blob)).toBe(true);
    expect(seen).toHaveLength(1); // not new any more

    const other = hostKeyBlob();
    const v3 = createHostKeyVerifier({ broker: '127.0.0.1:2222', knownBrokersFile: file });
    expect(v3.verify(other.blob)).toBe(false);
    const err = v3.error();
    expect(err).toBeInstanceOf(BrokerError);
    expect(err!.code).toBe('BRK_HOST_KEY_MISMATCH');
    expect(err!.message).toBe(
      `broker 127.0.0.1:2222 presented host key ${other.fp} but ${first.fp} was recorded in ${file}; ` +
        `if the broker's key really changed, check with its operator and remove that line (or pass --fingerprint ${other.fp})`,
    );
    // the recorded key is not replaced by a refused one
    expect(new KnownBrokers(file).lookup('127.0.0.1:2222')).toBe(first.fp);

    // a different broker is independent
    const v4 = createHostKeyVerifier({ broker: '127.0.0.1:2223', knownBrokersFile: file });
    expect(v4.verify(other.blob)).toBe(true);
  });

  test('pinned fingerprint: only that key, file untouched, prefix optional, whitespace trimmed', () => {
    const file = path.join(dir, 'known_brokers');
    const key = hostKeyBlob();
    for (const pin of [key.fp, ` ${key.fp}\n`, key.fp.slice('SHA256:'.length)]) {
      const v = createHostKeyVerifier({ broker: 'b:22', fingerprint: pin, knownBrokersFile: file });
      expect(v.verify(key.blob)).toBe(true);
      expect(v.error()).toBeUndefined();
    }
    expect(fs.existsSync(file)).toBe(false);

    const other = hostKeyBlob();
    const v = createHostKeyVerifier({ broker: 'b:22', fingerprint: key.fp, knownBrokersFile: file });
    expect(v.verify(other.blob)).toBe(false);
    expect(v.error()?.code).toBe('BRK_HOST_KEY_MISMATCH');
    expect(v.error()?.message).toBe(`broker b:22 presented host key ${other.fp}, expected ${key.fp} (--fingerprint); refusing to connect`);
    expect(fs.existsSync(file)).toBe(false);
  });

  test('pinned fingerprint is case-sensitive and overrides a recorded key', () => {
    const file = path.join(dir, 'known_brokers');
    const key = hostKeyBlob();
    const recorded = hostKeyBlob();
    new KnownBrokers(file).remember('b:22', recorded.fp);
    const body = key.fp.slice('SHA256:'.length);
    const flipped = body.replace(/[a-zA-Z]/, (ch) => (ch === ch.toLowerCase() ? ch.toUpperCase() : ch.toLowerCase()));
    expect(createHostKeyVerifier({ broker: 'b:22', fingerprint: `SHA256:${flipped}`, knownBrokersFile: file }).verify(key.blob)).toBe(false);
    expect(createHostKeyVerifier({ broker: 'b:22', fingerprint: key.fp, knownBrokersFile: file }).verify(key.blob)).toBe(true);
  });

  test('a malformed --fingerprint is refused up front', () => {
    expect(() => createHostKeyVerifier({ broker: 'b:22', fingerprint: 'SHA256:abc' })).toThrow(
      expect.objectContaining({ code: 'BRK_BAD_OPTION', message: expect.stringContaining('--fingerprint') }),
    );
  });

  test('an unusable known-brokers file refuses the connection instead of throwing', () => {
    const file = path.join(dir, 'is-a-dir');
    fs.mkdirSync(file);
    const v = createHostKeyVerifier({ broker: 'b:22', knownBrokersFile: file });
    expect(v.verify(hostKeyBlob().blob)).toBe(false);
    expect(v.error()?.code).toBe('BRK_BAD_OPTION');
    expect(v.error()?.message).toContain(file);
  });

  test('a known-brokers file that cannot be written refuses rather than silently not pinning', () => {
    const blocker = path.join(dir, 'blocker');
    fs.writeFileSync(blocker, 'not a dir');
    const file = path.join(blocker, 'known_brokers'); // parent is a file: ENOTDIR
    const v = createHostKeyVerifier({ broker: 'b:22', knownBrokersFile: file });
    expect(v.verify(hostKeyBlob().blob)).toBe(false);
    expect(v.error()?.code).toBe('BRK_BAD_OPTION');
    expect(v.error()?.message).toMatch(/--fingerprint/);
  });

  test('works as ssh2 hostVerifier in a real handshake', async () => {
    const hostA = generateIdentity('host-a');
    const hostB = generateIdentity('host-b');
    const file = path.join(dir, 'known_brokers');

    async function withServer<T>(hostKey: string, fn: (port: number) => Promise<T>): Promise<T> {
      const server = new Server({ hostKeys: [hostKey] }, (client) => {
        client.on('authentication', (ctx) => ctx.accept());
        client.on('error', () => undefined);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        return await fn((server.address() as AddressInfo).port);
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    }

    function connect(port: number, broker: string): Promise<{ ok: boolean; error?: BrokerError; fp?: string }> {
      const verifier = createHostKeyVerifier({ broker, knownBrokersFile: file });
      return new Promise((resolve) => {
        const client = new Client();
        let seen: string | undefined;
        client.on('ready', () => {
          client.end();
          resolve({ ok: true, fp: seen });
        });
        client.on('error', () => resolve({ ok: false, error: verifier.error() }));
        client.connect({
          host: '127.0.0.1',
          port,
          username: 'test',
          readyTimeout: 10_000,
          hostVerifier: (key: Buffer) => {
            seen = fingerprintOf(key);
            return verifier.verify(key);
          },
        });
      });
    }

    const broker = 'broker.test:2222'; // the name the user typed, not the socket address
    await withServer(hostA.privateKey, async (port) => {
      const r1 = await connect(port, broker);
      expect(r1).toEqual({ ok: true, fp: hostA.fingerprint });
      const r2 = await connect(port, broker);
      expect(r2.ok).toBe(true);
    });
    await withServer(hostB.privateKey, async (port) => {
      const r3 = await connect(port, broker);
      expect(r3.ok).toBe(false);
      expect(r3.error?.code).toBe('BRK_HOST_KEY_MISMATCH');
      expect(r3.error?.message).toContain(hostB.fingerprint);
      expect(r3.error?.message).toContain(hostA.fingerprint);
    });
  });
});

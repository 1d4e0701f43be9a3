/**
 * Clients pin the broker's host key: a wrong `--fingerprint` is refused (exit 4,
 * BRK_HOST_KEY_MISMATCH); without one, the first key is remembered in the
 * known-brokers file (trust on first use) and a different key for the same
 * address is later refused with a message that names the file.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sleep, spawnExpose, spawnJoin, startBroker, startExpose, startJoin, tempDir, type BrokerProc, type ExposeProc } from './harness';

/** A well-formed SHA256 fingerprint that no real key has. */
function bogusFingerprint(seed: string): string {
  return `SHA256:${createHash('sha256').update(seed).digest('base64').replace(/=+$/, '')}`;
}

let broker: BrokerProc;
let expose: ExposeProc;

beforeAll(async () => {
  broker = await startBroker();
  expose = await startExpose(broker, ['--allow', '127.0.0.1:9'], { fingerprint: true });
}, 30_000);

test('the right --fingerprint is accepted', async () => {
  const join = await startJoin(broker, expose.code, [], { fingerprint: true });
  expect(join.proc.running).toBe(true);
  expect(join.proc.stderr).toBe(''); // pinned: nothing is remembered, nothing to say
});

test('a wrong --fingerprint: join exits 4 with BRK_HOST_KEY_MISMATCH naming both keys', async () => {
  const wrong = bogusFingerprint('not-the-broker');
  const joinedBefore = broker.proc.lines.filter((l) => l.event === 'helper-joined').length;
  const join = await spawnJoin(broker, expose.code, [], { fingerprint: wrong });
  expect(await join.waitExit(20_000)).toBe(4);
  const line = join.stderrLines().at(-1)!;
  expect(line).toMatch(/\[BRK_HOST_KEY_MISMATCH\]$/);
  expect(line).toContain(wrong);
  expect(line).toContain(broker.fingerprint);
  // Refused before authenticating: the broker never saw this helper join.
  await sleep(200);
  expect(broker.proc.lines.filter((l) => l.event === 'helper-joined')).toHaveLength(joinedBefore);
});

test('a wrong --fingerprint on the device side too: expose exits 4', async () => {
  const p = spawnExpose(broker, ['--allow', '127.0.0.1:9'], { fingerprint: bogusFingerprint('device') });
  expect(await p.waitExit(20_000)).toBe(4);
  expect(p.stderr).toMatch(/BRK_HOST_KEY_MISMATCH/);
  expect(p.lines.some((l) => l.event === 'session')).toBe(false);
});

test('a malformed --fingerprint is a usage error (exit 2)', async () => {
  const join = await spawnJoin(broker, expose.code, [], { fingerprint: 'SHA256:tooshort' });
  expect(await join.waitExit(20_000)).toBe(2);
  expect(join.stderr).toMatch(/--fingerprint.*\[BRK_BAD_OPTION\]/);
});

test('trust on first use: the first join remembers the key, the next one is quiet', async () => {
  const file = path.join(tempDir(), 'sub', 'known_brokers'); // the directory is created too
  const first = await startJoin(broker, expose.code, [], { knownBrokers: file });
  expect(first.proc.stderr).toContain(`remembered its host key ${broker.fingerprint}`);
  const text = fs.readFileSync(file, 'utf8');
  expect(text.split('\n')).toContain(`${broker.ssh} ${broker.fingerprint}`);
  expect(fs.statSync(file).mode & 0o077).toBe(0); // not readable by others

  const second = await startJoin(broker, expose.code, [], { knownBrokers: file });
  expect(second.proc.stderr).toBe('');
  expect(fs.readFileSync(file, 'utf8')).toBe(text);
});

test('a changed key for a known broker is refused loudly, naming the file, and the file is kept', async () => {
  const file = path.join(tempDir(), 'known_brokers');
  const recorded = bogusFingerprint('the-key-we-saw-last-time');
  const original = `# remote-assist known brokers\n${broker.ssh} ${recorded}\n`;
  fs.writeFileSync(file, original, { mode: 0o600 });
  for (const p of [await spawnJoin(broker, expose.code, [], { knownBrokers: file }), spawnExpose(broker, ['--allow', '127.0.0.1:9'], { knownBrokers: file })]) {
    expect(await p.waitExit(20_000)).toBe(4);
    const line = p.stderrLines().at(-1)!;
    expect(line).toMatch(/\[BRK_HOST_KEY_MISMATCH\]$/);
    expect(line).toContain(file);
    expect(line).toContain(recorded);
    expect(line).toContain(broker.fingerprint);
  }
  expect(fs.readFileSync(file, 'utf8')).toBe(original);
});

test('the broker keeps its host key across restarts (same --data-dir, same fingerprint)', async () => {
  const dataDir = tempDir('rab-broker-');
  const a = await startBroker({ dataDir });
  await a.proc.stop();
  const b = await startBroker({ dataDir });
  expect(b.fingerprint).toBe(a.fingerprint);
  const c = await startBroker();
  expect(c.fingerprint).not.toBe(a.fingerprint);
  const mode = fs.statSync(path.join(dataDir, fs.readdirSync(dataDir).find((f) => !f.endsWith('.pub'))!)).mode;
  expect(mode & 0o077).toBe(0); // the private host key is private
});

/**
 * The CLIs run from one bundled file with V8's code cache (src/cli/load-bundle.ts,
 * scripts/bundle.js): the build must leave a cache that V8 accepts, the programs
 * must still work when V8 rejects it or when there is no bundle at all, and the
 * bundled ssh2 must load its native crypto binding from node_modules (not fall back
 * to its JavaScript ciphers).
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO } from './harness';

const LOADER = path.join(REPO, 'dist', 'cli', 'load-bundle.js');

function node(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, ...opts.env };
  delete env.NODE_OPTIONS;
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: opts.cwd ?? REPO, env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** `node [flags] -e` printing how the loader found the entry, and what the entry exports. */
const probe = (loader: string) => `const r = require(${JSON.stringify(loader)}).loadEntry(); console.log(JSON.stringify({ from: r.from, exports: Object.keys(r.entry).sort() }))`;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-test-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('the build leaves a bundle and a code cache that V8 accepts', async () => {
  expect(fs.statSync(path.join(REPO, 'dist', 'cli.bundle.js')).size).toBeGreaterThan(100_000);
  expect(fs.statSync(path.join(REPO, 'dist', 'cli.bundle.cache')).size).toBeGreaterThan(100_000);
  const r = await node(['-e', probe(LOADER)]);
  expect(r.stderr).toBe('');
  expect(JSON.parse(r.stdout)).toEqual({ from: 'bundle, code cache used', exports: ['agentMain', 'applyProcessTuning', 'brokerMain', 'loadCommands', 'setCodeOrigin'] });
});

test('with other V8 flags the cache is rejected and the programs still work', async () => {
  const r = await node(['--no-opt', '-e', probe(LOADER)]);
  expect(JSON.parse(r.stdout).from).toBe('bundle, code cache rejected');
  const help = await node(['--no-opt', path.join(REPO, 'bin', 'broker-agent'), 'join', '--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain('broker-agent join <code>');
});

test('a bad session code is refused by the bundled CLI with its exact error and exit code', async () => {
  const r = await node([path.join(REPO, 'bin', 'broker-agent'), 'join', 'ABCD-1234', '--broker', '127.0.0.1:1']);
  expect(r.code).toBe(3);
  expect(r.stderr).toMatch(/^broker-agent join: "ABCD-1234" is not a session code .*\[BRK_BAD_CODE\]\n$/);
});

test('yargs in the bundle finds its own files: --version from any directory, translated messages', async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
  const version = await node([path.join(REPO, 'bin', 'broker-agent'), '--version'], { cwd: tmp });
  expect(version.stdout.trim()).toBe(pkg.version);
  const german = await node([path.join(REPO, 'bin', 'broker-agent'), 'join'], { cwd: tmp, env: { LANG: 'de_DE.UTF-8', LC_ALL: '' } });
  expect(german.code).toBe(1);
  expect(german.stderr).toContain('Nicht genügend Argumente ohne Optionen');
});

test('without a bundle the entry runs from separate files; a cache written for a bundle is then used; a damaged one is rejected', async () => {
  // A copy of dist/ without the bundle (node_modules reached through a link).
  const copy = path.join(tmp, 'pkg');
  fs.mkdirSync(copy);
  fs.cpSync(path.join(REPO, 'dist'), path.join(copy, 'dist'), { recursive: true });
  fs.cpSync(path.join(REPO, 'bin'), path.join(copy, 'bin'), { recursive: true });
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(copy, 'node_modules'));
  const bundle = path.join(copy, 'dist', 'cli.bundle.js');
  const cache = path.join(copy, 'dist', 'cli.bundle.cache');
  fs.renameSync(bundle, `${bundle}.aside`);
  fs.rmSync(cache);
  const loader = path.join(copy, 'dist', 'cli', 'load-bundle.js');
  expect(JSON.parse((await node(['-e', probe(loader)])).stdout).from).toBe('files');
  const help = await node([path.join(copy, 'bin', 'broker'), 'serve', '--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain('broker serve');

  fs.renameSync(`${bundle}.aside`, bundle);
  expect(JSON.parse((await node(['-e', probe(loader)])).stdout).from).toBe('bundle, no code cache');
  const wrote = await node(['-e', `process.stdout.write(String(require(${JSON.stringify(loader)}).writeCodeCache()))`]);
  expect(Number(wrote.stdout)).toBe(fs.statSync(cache).size);
  expect(JSON.parse((await node(['-e', probe(loader)])).stdout).from).toBe('bundle, code cache used');

  // A damaged cache, one cut short, or one written for other bundle bytes of the same
  // length, is not given to V8 (which does not check its data's content, and crashed
  // on a cache damaged like this).
  const good = fs.readFileSync(cache);
  const damaged = Buffer.from(good);
  damaged.fill(0x5a, 64, 4096);
  fs.writeFileSync(cache, damaged);
  expect(JSON.parse((await node(['-e', probe(loader)])).stdout).from).toBe('bundle, code cache damaged');
  fs.writeFileSync(cache, good.subarray(0, 1000));
  expect(JSON.parse((await node(['-e', probe(loader)])).stdout).from).toBe('bundle, code cache damaged');
  fs.writeFileSync(cache, good);
  const source = fs.readFileSync(bundle, 'utf8');
  fs.writeFileSync(bundle, source.replace('Precedence: flags,', 'Precedence: FLAGS,'));
  expect(fs.readFileSync(bundle).length).toBe(Buffer.byteLength(source));
  expect(JSON.parse((await node(['-e', probe(loader)])).stdout).from).toBe('bundle, code cache damaged');
  const joinHelp = await node([path.join(copy, 'bin', 'broker-agent'), 'join', '--help']);
  expect(joinHelp.code).toBe(0);
  expect(joinHelp.stdout).toContain('broker-agent join <code>');
});

test('the bundled ssh2 loads its native crypto binding from node_modules', async () => {
  const script = `
    const { entry } = require(${JSON.stringify(LOADER)}).loadEntry();
    entry.loadCommands();
    const loaded = Object.keys(require.cache);
    console.log(JSON.stringify({
      binding: loaded.some((f) => f.endsWith('/node_modules/ssh2/lib/protocol/crypto/build/Release/sshcrypto.node')),
      ssh2Files: loaded.filter((f) => f.includes('/node_modules/ssh2/') && f.endsWith('.js')).length,
    }));`;
  const r = await node(['-e', script]);
  expect(r.stderr).toBe('');
  expect(JSON.parse(r.stdout)).toEqual({ binding: true, ssh2Files: 0 });
});

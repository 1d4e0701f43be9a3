/**
 * The core path, with real processes: broker + one exposing device + TWO helpers
 * joined at once. Real curl through each helper's local SOCKS5 port reaches the
 * target; 8 MiB go down and up intact (sha256) on both helpers concurrently; and
 * half-close works (the client shuts its write side, the server answers after EOF).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  curlSocks, readAll, sha256, sha256File, socksConnect, startBroker, startExpose, startJoin, startTargets, targetLib, tempDir,
  type BrokerProc, type ExposeProc, type JoinProc, type Targets,
} from './harness';

const MiB = 1024 * 1024;

let targets: Targets;
let broker: BrokerProc;
let expose: ExposeProc;
let joins: JoinProc[];

beforeAll(async () => {
  targets = await startTargets();
  broker = await startBroker();
  expose = await startExpose(broker, [
    '--label', 'socks-e2e',
    '--allow', `127.0.0.1:${targets.httpPort}`,
    '--allow', `127.0.0.1:${targets.halfClosePort}`,
  ]);
  joins = await Promise.all([startJoin(broker, expose.code), startJoin(broker, expose.code)]);
}, 60_000);

test('two helpers join the same session and each gets its own SOCKS port and helper id', () => {
  expect(joins).toHaveLength(2);
  expect(joins[0]!.socksPort).not.toBe(joins[1]!.socksPort);
  const ids = joins.map((j) => (j.ready.helper as { id: number }).id);
  expect(new Set(ids).size).toBe(2);
  for (const j of joins) {
    const d = j.ready.descriptor as { label?: string; allow: string[] };
    expect(d.label).toBe('socks-e2e');
    expect(d.allow).toEqual(expect.arrayContaining([`127.0.0.1:${targets.httpPort}`, `127.0.0.1:${targets.halfClosePort}`]));
  }
});

test('curl --socks5-hostname through each helper returns the target marker', async () => {
  const url = `http://127.0.0.1:${targets.httpPort}/`;
  const results = await Promise.all(joins.map((j) => curlSocks(j.socks, url)));
  for (const r of results) {
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(targets.marker);
  }
  // The device saw both streams (its live view / --json output).
  await expose.proc.waitFor((l) => l.event === 'stream-opened' && l.target === `127.0.0.1:${targets.httpPort}` && l.rep === 0, 5000, 'stream-opened on the device');
});

test('8 MiB download through both helpers at once arrives intact (sha256)', async () => {
  const dir = tempDir();
  const bytes = 8 * MiB;
  const expected = targetLib.sha256(targetLib.blob(bytes, 'down'));
  const runs = joins.map(async (j, i) => {
    const out = path.join(dir, `down-${i}.bin`);
    const headers = path.join(dir, `down-${i}.headers`);
    const r = await curlSocks(j.socks, `http://127.0.0.1:${targets.httpPort}/blob?bytes=${bytes}&seed=down`, ['-o', out, '-D', headers], { maxTimeSec: 60 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.statSync(out).size).toBe(bytes);
    expect(sha256File(out)).toBe(expected);
    expect(fs.readFileSync(headers, 'utf8')).toMatch(new RegExp(`x-sha256: ${expected}`, 'i'));
  });
  await Promise.all(runs);
  // The broker's audit line for a download stream counts every byte.
  const audit = await broker.proc.waitFor(
    (l) => l.event === 'stream' && l.dest === `127.0.0.1:${targets.httpPort}` && l.outcome === 'succeeded' && Number(l.received) >= bytes,
    10_000, 'the broker audit line of the download',
  );
  expect(audit.session).toMatch(/…$/); // logs never carry the full code
  expect(JSON.stringify(broker.proc.lines)).not.toContain(expose.code);
}, 90_000);

test('8 MiB upload through both helpers at once arrives intact (sha256)', async () => {
  const dir = tempDir();
  const runs = joins.map(async (j, i) => {
    const file = path.join(dir, `up-${i}.bin`);
    const data = targetLib.blob(8 * MiB, `up-${i}`);
    fs.writeFileSync(file, data);
    const r = await curlSocks(j.socks, `http://127.0.0.1:${targets.httpPort}/sha256`, ['--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream'], { maxTimeSec: 60 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ bytes: data.length, sha256: sha256(data) });
  });
  await Promise.all(runs);
}, 90_000);

test('half-close: the client ends its write side, the server still answers after EOF', async () => {
  for (const j of joins) {
    const s = await socksConnect(j.socks, '127.0.0.1', targets.halfClosePort);
    expect(s.rep).toBe(0);
    const payload = targetLib.blob(512 * 1024, `half-${j.socksPort}`);
    const answer = readAll(s.socket, 20_000, s.rest);
    s.socket.write(payload);
    s.socket.end(); // FIN: no more data from us, but keep reading
    const r = await answer;
    expect(r.closed).toBe(true);
    expect(JSON.parse(r.data.toString('utf8'))).toEqual({ bytes: payload.length, sha256: sha256(payload) });
  }
}, 60_000);

test('the helpers and the device are still up after all of it', () => {
  for (const j of joins) expect(j.proc.running).toBe(true);
  expect(expose.proc.running).toBe(true);
  expect(broker.proc.running).toBe(true);
});

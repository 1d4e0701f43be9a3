/**
 * Proof that traffic really goes through the device: the target lives in a LAN
 * namespace that only the device's namespace can reach. The broker and the helper
 * run in the root namespace, which has no route to that LAN. Fetching
 * http://printer.lan:8080/ (a name only the device's /etc/hosts knows) and
 * http://198.18.0.2:8080/ through the helper works; fetching directly fails; and
 * the target sees the device's LAN address as the client.
 */
import {
  createTopology, curl, curlSocks, run, sha256File, spawnTargets, startBroker, startExpose, startJoin, targetLib, tempDir,
  type JoinProc, type Topology,
} from './harness';
import * as path from 'node:path';

const MARKER = `printer-on-the-lan-${process.pid}`;
let topo: Topology;
let join: JoinProc;

beforeAll(async () => {
  topo = await createTopology();
  await spawnTargets({ host: topo.lanAddr, port: 8080, marker: MARKER, netns: topo.lan });
  const broker = await startBroker({ host: topo.rootAddr });
  const expose = await startExpose(broker, ['--label', 'front-desk-pc', '--allow', `${topo.lanPrefix}:8080`, '--allow', 'printer.lan:8080'], { netns: topo.dev });
  join = await startJoin(broker, expose.code);
}, 60_000);

test('the root namespace has no route to the LAN (so a direct fetch can only fail, and stays on this machine)', async () => {
  const r = await run('ip', ['-4', 'route', 'get', topo.lanAddr]).then(
    (x) => x.stdout,
    (err: Error) => err.message,
  );
  expect(r).toMatch(/unreachable|No route to host|Network is unreachable/i);
  // Guarded by the check above: the packet cannot leave through the default route.
  const direct = await curl(['--noproxy', '*', '--connect-timeout', '3', `http://${topo.lanAddr}:8080/`], { maxTimeSec: 5 });
  expect(direct.code).not.toBe(0);
  expect(direct.stdout).not.toContain(MARKER);
});

test('http://printer.lan:8080/ through the helper: the name resolves on the device', async () => {
  const r = await curlSocks(join.socks, 'http://printer.lan:8080/');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toBe(MARKER);
});

test('http://198.18.0.2:8080/ through the helper', async () => {
  const r = await curlSocks(join.socks, `http://${topo.lanAddr}:8080/`);
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toBe(MARKER);
});

test("the target sees the device's LAN address as the client", async () => {
  const r = await curlSocks(join.socks, 'http://printer.lan:8080/whoami');
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toBe(topo.devLanAddr);
});

test('bulk data crosses the namespaces intact', async () => {
  const out = path.join(tempDir(), 'blob.bin');
  const bytes = 4 * 1024 * 1024;
  const r = await curlSocks(join.socks, `http://printer.lan:8080/blob?bytes=${bytes}&seed=netns`, ['-o', out], { maxTimeSec: 60 });
  expect(r.code).toBe(0);
  expect(sha256File(out)).toBe(targetLib.sha256(targetLib.blob(bytes, 'netns')));
}, 60_000);

test('a LAN port the device does not allow is refused by policy, not attempted', async () => {
  const r = await curlSocks(join.socks, `http://${topo.lanAddr}:8081/`);
  expect(r.code).toBe(97);
  expect(r.stderr).toMatch(/\(2\)/);
});

/**
 * Session lifecycle beyond liveness: a session created with `--expires` ends on
 * its own and tells everyone why; a broker stopped with SIGTERM ends every session,
 * tells helpers and devices, and exits 0.
 */
import net from 'node:net';
import { BROKER_BIN, curlSocks, spawnProc, splitHostPort, startBroker, startExpose, startJoin, startTargets, tempDir } from './harness';

/** First bytes a TCP connection to host:port receives (an SSH server sends its version line). */
function banner(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    s.setTimeout(5000, () => { s.destroy(); reject(new Error('no banner')); });
    s.once('data', (d: Buffer) => { s.destroy(); resolve(d.toString('latin1')); });
    s.once('error', reject);
  });
}

test('by default the broker listens on every interface, IPv6 and IPv4 (like sshd)', async () => {
  const proc = spawnProc('broker', BROKER_BIN, ['serve', '--listen', '*:0', '--data-dir', tempDir('rab-broker-'), '--log-format', 'json']);
  const ev = await proc.waitFor((l) => l.event === 'listening', 15_000, 'the listening line');
  const { host, port } = splitHostPort(String(ev.ssh));
  expect(['::', '0.0.0.0']).toContain(host);
  // bin/ tuned the process before anything loaded ssh2 (docs/performance.md: the GC flag doubled throughput)
  // and, once listening, the compiler settings for the traffic's code
  expect(ev.tuning).toEqual(['random-pool', '--no-concurrent-array-buffer-sweeping', '--interrupt-budget=33792', '--no-allocation-site-pretenuring', '--no-incremental-marking below 32 MiB heap', 'glibc malloc trim threshold 64 MiB', '--always-sparkplug', '--interrupt-budget=8448 for the first 3 s of CPU']);
  // bin/ ran the bundled CLI with the code cache the build wrote (src/cli/load-bundle.ts)
  expect(ev.code).toBe('bundle, code cache used');
  expect(await banner('127.0.0.1', port)).toMatch(/^SSH-2\.0-/);
  if (host === '::') expect(await banner('::1', port)).toMatch(/^SSH-2\.0-/);
  proc.kill('SIGTERM');
  expect(await proc.waitExit(10_000)).toBe(0);
});

test('BROKER_PROCESS_TUNING=0 leaves the process as node starts it', async () => {
  const proc = spawnProc('broker', BROKER_BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', tempDir('rab-broker-'), '--log-format', 'json'], { env: { BROKER_PROCESS_TUNING: '0' } });
  const ev = await proc.waitFor((l) => l.event === 'listening', 15_000, 'the listening line');
  expect(ev.tuning).toEqual([]);
  expect(ev.code).toBe('bundle, code cache used');
  proc.kill('SIGTERM');
  expect(await proc.waitExit(10_000)).toBe(0);
});

test('--expires ends the session at its expiry time; helpers and the device are told why', async () => {
  const broker = await startBroker();
  const targets = await startTargets();
  const expose = await startExpose(broker, ['--allow', `127.0.0.1:${targets.httpPort}`, '--expires', '3s']);
  const join = await startJoin(broker, expose.code);
  expect((await curlSocks(join.socks, `http://127.0.0.1:${targets.httpPort}/`)).stdout.trim()).toBe(targets.marker);
  const started = Date.now();
  const ended = await join.proc.waitFor((l) => l.event === 'session-ended', 10_000, 'session-ended on join');
  expect(String(ended.message)).toMatch(/expiry/);
  expect(Date.now() - started).toBeLessThan(6000);
  expect(await join.proc.waitExit(5000)).toBe(1);
  expect(await expose.proc.waitExit(5000)).toBe(1);
  await broker.proc.waitFor((l) => l.event === 'session-ended' && l.reason === 'expired', 5000, 'the broker logging expired');
});

test('SIGTERM on the broker ends every session with a reason and exits 0', async () => {
  const broker = await startBroker();
  const targets = await startTargets();
  const expose = await startExpose(broker, ['--allow', `127.0.0.1:${targets.httpPort}`]);
  const join = await startJoin(broker, expose.code);
  broker.proc.kill('SIGTERM');
  const ended = await join.proc.waitFor((l) => l.event === 'session-ended', 10_000, 'session-ended on join');
  expect(String(ended.message)).toMatch(/shutting down/);
  expect(await join.proc.waitExit(5000)).toBe(1);
  expect(await expose.proc.waitExit(5000)).toBe(1);
  expect(await broker.proc.waitExit(10_000)).toBe(0);
});

/**
 * Session lifecycle beyond liveness: a session created with `--expires` ends on
 * its own and tells everyone why; a broker stopped with SIGTERM ends every session,
 * tells helpers and devices, and exits 0.
 */
import { startBroker, startExpose, startJoin, startTargets, curlSocks } from './harness';

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

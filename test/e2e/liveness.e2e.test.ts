/**
 * Claim 3, with real processes: the broker checks every device tunnel at a fixed
 * interval (--check-interval 1s here). When the device dies (kill -9, no goodbye),
 * within two intervals the broker deletes that agent's key (log event
 * `agent-key-deleted`), ends the session, and every helper is told why, prints
 * `session-ended` and exits non-zero with a one-line reason.
 */
import { curlSocks, spawnJoin, startBroker, startExpose, startJoin, startTargets, type JsonLine } from './harness';

const CHECK_INTERVAL_MS = 1000;

test('kill -9 of the device: key deleted within two check intervals, helpers told and exit non-zero', async () => {
  const targets = await startTargets();
  const broker = await startBroker({ checkInterval: `${CHECK_INTERVAL_MS}ms` });
  const expose = await startExpose(broker, ['--allow', `127.0.0.1:${targets.httpPort}`]);
  // Pinned fingerprint: no trust-on-first-use note on stderr, so the reason is the only line.
  const joins = await Promise.all([startJoin(broker, expose.code, [], { fingerprint: true }), startJoin(broker, expose.code, [], { fingerprint: true })]);
  const created = await broker.proc.waitFor((l) => l.event === 'session-created', 5000, 'session-created');
  expect(String(created.agentKey)).toMatch(/^SHA256:/);

  const killedAt = Date.now();
  expose.proc.kill('SIGKILL');

  const deleted = await broker.proc.waitFor((l) => l.event === 'agent-key-deleted', 10_000, 'agent-key-deleted');
  const keyDeletedMs = Date.now() - killedAt;
  expect(deleted.fingerprint).toBe(created.agentKey);
  expect(deleted.session).toBe(created.session);

  const ended: JsonLine[] = await Promise.all(joins.map((j) => j.proc.waitFor((l) => l.event === 'session-ended', 10_000, 'session-ended')));
  const helpersToldMs = Date.now() - killedAt;
  const codes = await Promise.all(joins.map((j) => j.proc.waitExit(10_000)));
  const exitedMs = Date.now() - killedAt;
  console.log(`liveness (check interval ${CHECK_INTERVAL_MS} ms): key deleted after ${keyDeletedMs} ms, helpers told after ${helpersToldMs} ms, helpers exited after ${exitedMs} ms`);

  expect(keyDeletedMs).toBeLessThanOrEqual(2 * CHECK_INTERVAL_MS + 1500); // two intervals + process/scheduling slack
  for (const ev of ended) {
    expect(ev.code).toBe('BRK_SESSION_ENDED');
    expect(String(ev.message)).toMatch(/device disconnected/);
  }
  for (const [i, code] of codes.entries()) {
    expect(code).not.toBe(0);
    const lines = joins[i]!.proc.stderrLines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^broker-agent join: session ended: .*device disconnected.*\[BRK_SESSION_ENDED\]$/);
  }
  const brokerEnded = await broker.proc.waitFor((l) => l.event === 'session-ended', 5000, 'session-ended in the broker log');
  expect(brokerEnded.reason).toBe('agent-gone');

  // The code died with the session; the broker itself carries on.
  const late = await spawnJoin(broker, expose.code);
  expect(await late.waitExit(20_000)).toBe(3);
  expect(late.stderr).toMatch(/BRK_BAD_CODE/);
  const again = await startExpose(broker, ['--allow', `127.0.0.1:${targets.httpPort}`]);
  expect(again.code).not.toBe(expose.code);
  expect(broker.proc.running).toBe(true);
}, 60_000);

test('kill -9 of a helper: the device is told it left, the session and the other helper carry on', async () => {
  const targets = await startTargets();
  const broker = await startBroker({ checkInterval: `${CHECK_INTERVAL_MS}ms` });
  const expose = await startExpose(broker, ['--allow', `127.0.0.1:${targets.httpPort}`]);
  const [gone, stays] = await Promise.all([startJoin(broker, expose.code), startJoin(broker, expose.code)]);
  const goneId = (gone.ready.helper as { id: number }).id;
  gone.proc.kill('SIGKILL');
  const left = await expose.proc.waitFor((l) => l.event === 'helper-left' && (l.helper as { id: number }).id === goneId, 10_000, 'helper-left');
  expect(left.helpers).toBe(1);
  // Wait past a sweep: nothing else ends.
  await new Promise((r) => setTimeout(r, 2 * CHECK_INTERVAL_MS + 200));
  expect(broker.proc.lines.some((l) => l.event === 'agent-key-deleted')).toBe(false);
  expect(expose.proc.running).toBe(true);
  expect(stays.proc.running).toBe(true);
  const r = await curlSocks(stays.socks, `http://127.0.0.1:${targets.httpPort}/`);
  expect(r.stdout.trim()).toBe(targets.marker);
}, 60_000);

test('a device that goes silent without closing (SIGSTOP) is detected by keepalive and its key deleted', async () => {
  const broker = await startBroker({ checkInterval: `${CHECK_INTERVAL_MS}ms` });
  const expose = await startExpose(broker, ['--allow', '127.0.0.1:9']);
  const join = await startJoin(broker, expose.code, [], { fingerprint: true });
  const stoppedAt = Date.now();
  expose.proc.kill('SIGSTOP'); // the TCP connection stays open; only silence tells
  try {
    await broker.proc.waitFor((l) => l.event === 'agent-key-deleted', 15_000, 'agent-key-deleted');
    const ms = Date.now() - stoppedAt;
    console.log(`liveness (check interval ${CHECK_INTERVAL_MS} ms): silent device detected after ${ms} ms`);
    // keepalive: 2 unanswered probes at the check interval, then the next sweep.
    expect(ms).toBeLessThanOrEqual(4 * CHECK_INTERVAL_MS + 2000);
    expect(await join.proc.waitExit(10_000)).not.toBe(0);
    expect(join.proc.stderr).toMatch(/BRK_SESSION_ENDED/);
  } finally {
    expose.proc.kill('SIGCONT');
  }
}, 60_000);

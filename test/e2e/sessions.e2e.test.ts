/**
 * Sessions as users see them: a wrong code is refused with its own exit code and
 * error code; two devices on one broker are isolated (a helper only ever gets its
 * own device's policy and network); `--max-helpers` caps a session.
 */
import {
  curlSocks, socksRep, spawnJoin, startBroker, startExpose, startJoin, startTargets, wrongCode,
  type BrokerProc, type Targets,
} from './harness';

let broker: BrokerProc;

beforeAll(async () => {
  broker = await startBroker();
}, 30_000);

describe('joining', () => {
  test('a wrong session code is refused: exit 3, BRK_BAD_CODE on stderr and as a JSON error', async () => {
    const targets = await startTargets();
    const expose = await startExpose(broker, ['--allow', `127.0.0.1:${targets.httpPort}`]);
    const join = await spawnJoin(broker, wrongCode(expose.code));
    expect(await join.waitExit(20_000)).toBe(3);
    const err = join.stderrLines().at(-1)!;
    expect(err).toMatch(/^broker-agent join: .*\[BRK_BAD_CODE\]$/);
    expect(err).not.toContain(expose.code); // the real code is never echoed
    expect(join.lines).toContainEqual(expect.objectContaining({ event: 'error', code: 'BRK_BAD_CODE' }));
    // The broker logged the refusal without the code.
    const refused = await broker.proc.waitFor((l) => l.event === 'join-refused' && l.code === 'BRK_BAD_CODE', 5000, 'join-refused');
    expect(JSON.stringify(refused)).not.toContain(wrongCode(expose.code));
    // The right code still works.
    const ok = await startJoin(broker, expose.code);
    expect((await curlSocks(ok.socks, `http://127.0.0.1:${targets.httpPort}/`)).stdout.trim()).toBe(targets.marker);
  });

  test('something that is not a session code at all is refused the same way', async () => {
    const join = await spawnJoin(broker, 'not-a-session-code');
    expect(await join.waitExit(20_000)).toBe(3);
    expect(join.stderr).toMatch(/BRK_BAD_CODE/);
  });
});

describe('guessing codes', () => {
  test('after 10 wrong codes from one address, further joins are refused with BRK_RATE_LIMITED', async () => {
    const own = await startBroker(); // the limiter is per broker: keep the shared one clean
    const expose = await startExpose(own, ['--allow', '127.0.0.1:9']);
    // Ten well-formed codes that differ from the real one in their first character.
    const guesses = [...'0123456789abcdefghjk'].filter((c) => c !== expose.code[0]).slice(0, 10).map((c) => c + expose.code.slice(1));
    for (let batch = 0; batch < 2; batch++) {
      const joins = await Promise.all(guesses.slice(batch * 5, batch * 5 + 5).map((g) => spawnJoin(own, g)));
      for (const j of joins) {
        expect(await j.waitExit(20_000)).toBe(3);
        expect(j.stderr).toMatch(/BRK_BAD_CODE/);
      }
    }
    const blocked = await spawnJoin(own, wrongCode(expose.code));
    expect(await blocked.waitExit(20_000)).toBe(3);
    expect(blocked.stderrLines().at(-1)).toMatch(/too many failed joins.*try again in \d+ s.*\[BRK_RATE_LIMITED\]$/);
    // The device's session itself is untouched.
    expect(expose.proc.running).toBe(true);
  }, 60_000);
});

describe('isolation between two devices on one broker', () => {
  let a: Targets;
  let b: Targets;

  beforeAll(async () => {
    a = await startTargets('device-A-target');
    b = await startTargets('device-B-target');
  });

  test("each helper reaches its own device's targets and gets 0x02 for the other's", async () => {
    const exposeA = await startExpose(broker, ['--label', 'A', '--allow', `127.0.0.1:${a.httpPort}`]);
    const exposeB = await startExpose(broker, ['--label', 'B', '--allow', `127.0.0.1:${b.httpPort}`]);
    expect(exposeA.code).not.toBe(exposeB.code);
    const [joinA, joinB] = await Promise.all([startJoin(broker, exposeA.code), startJoin(broker, exposeB.code)]);
    expect((joinA.ready.descriptor as { label: string }).label).toBe('A');
    expect((joinB.ready.descriptor as { label: string }).label).toBe('B');

    const aOwn = await curlSocks(joinA.socks, `http://127.0.0.1:${a.httpPort}/`);
    const bOwn = await curlSocks(joinB.socks, `http://127.0.0.1:${b.httpPort}/`);
    expect([aOwn.code, aOwn.stdout.trim()]).toEqual([0, 'device-A-target']);
    expect([bOwn.code, bOwn.stdout.trim()]).toEqual([0, 'device-B-target']);

    expect(await socksRep(joinA.socks, '127.0.0.1', b.httpPort)).toBe(0x02);
    expect(await socksRep(joinB.socks, '127.0.0.1', a.httpPort)).toBe(0x02);

    // Device A never saw B's helper nor any stream towards B's target, and vice versa.
    const helperA = (joinA.ready.helper as { id: number }).id;
    const helperB = (joinB.ready.helper as { id: number }).id;
    const joinedOn = (lines: typeof exposeA.proc.lines) => lines.filter((l) => l.event === 'helper-joined').map((l) => (l.helper as { id: number }).id);
    await exposeA.proc.waitFor((l) => l.event === 'helper-joined', 5000, 'helper-joined on A');
    await exposeB.proc.waitFor((l) => l.event === 'helper-joined', 5000, 'helper-joined on B');
    expect(joinedOn(exposeA.proc.lines)).toEqual([helperA]);
    expect(joinedOn(exposeB.proc.lines)).toEqual([helperB]);
    const streamsTo = (lines: typeof exposeA.proc.lines) => lines.filter((l) => l.event === 'stream-opened').map((l) => l.target);
    expect(streamsTo(exposeA.proc.lines)).not.toContain(`127.0.0.1:${b.httpPort}`);
    expect(streamsTo(exposeB.proc.lines)).not.toContain(`127.0.0.1:${a.httpPort}`);
  });
});

describe('--max-helpers', () => {
  test('a second helper is refused with BRK_SESSION_FULL; the slot frees when the first leaves', async () => {
    const t = await startTargets();
    const expose = await startExpose(broker, ['--max-helpers', '1', '--allow', `127.0.0.1:${t.httpPort}`]);
    const first = await startJoin(broker, expose.code);
    expect(first.ready.descriptor).toMatchObject({ maxHelpers: 1 });

    const second = await spawnJoin(broker, expose.code);
    expect(await second.waitExit(20_000)).toBe(3);
    expect(second.stderr).toMatch(/BRK_SESSION_FULL/);
    expect(second.lines).toContainEqual(expect.objectContaining({ event: 'error', code: 'BRK_SESSION_FULL' }));
    // The first helper is unaffected.
    expect((await curlSocks(first.socks, `http://127.0.0.1:${t.httpPort}/`)).stdout.trim()).toBe(t.marker);

    await first.proc.stop();
    await expose.proc.waitFor((l) => l.event === 'helper-left', 10_000, 'helper-left');
    const third = await startJoin(broker, expose.code);
    expect((await curlSocks(third.socks, `http://127.0.0.1:${t.httpPort}/`)).stdout.trim()).toBe(t.marker);
  });
});

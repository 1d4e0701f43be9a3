/**
 * The benchmark suite must not rot: run two short scenarios (ours and direct only,
 * tiny sizes) and check that they produce numbers. No timing is asserted.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO, run, tempDir } from './harness';

/** ab.js's summary line for one variant: "<label>  a / b / c   runs [...]   CPU per ...". */
function summaryLine(stdout: string, label = 'default'): string | undefined {
  return stdout.split('\n').find((x) => x.startsWith(`${label} `));
}

/** The medians on a summary line, as printed ('-' where there is none). */
function medians(line: string, label = 'default'): string[] {
  return line.slice(label.length).trim().split('   ')[0]!.split(' / ');
}

test('npm run bench -- --quick (httpfront, connections, slowlink, start) produces a results file with numbers', async () => {
  const out = path.join(tempDir('rab-bench-'), 'results.json');
  await run(process.execPath, [path.join(REPO, 'bench', 'run.js'), '--quick', '--skip-openssh', '--only', 'httpfront,connections,slowlink,start', '--repeats', '1', '--out', out], 180_000);
  const results = JSON.parse(fs.readFileSync(out, 'utf8')) as { scenarios: Array<{ name: string; errors: string[]; rows: Array<{ metric: string; stats: Record<string, { median: number | null }> }> }> };
  const byName = Object.fromEntries(results.scenarios.map((s) => [s.name, s]));
  for (const name of ['httpfront', 'connections', 'slowlink', 'start']) {
    expect(byName[name]).toBeDefined();
    expect(byName[name]!.errors).toEqual([]);
  }
  const median = (scenario: string, metric: string) => byName[scenario]!.rows.find((r) => r.metric === metric)?.stats.ours?.median;
  expect(median('httpfront', 'keep-alive requests/s via HTTP proxy')).toBeGreaterThan(0);
  expect(median('httpfront', 'keep-alive requests/s via SOCKS')).toBeGreaterThan(0);
  expect(median('connections', 'connections/s (sequential)')).toBeGreaterThan(0);
  // the plain-node floor (our chain's shape as plain Node relays) runs beside ours
  const plain = byName.connections!.rows.find((r) => r.metric === 'connections/s (sequential)')?.stats['plain-node']?.median;
  expect(plain).toBeGreaterThan(0);
  // a new broker-agent join, spawn to its first answer: at least node's own start
  expect(median('start', 'new helper: spawn to first answer')).toBeGreaterThan(20);
  expect(median('start', 'new helper: its CPU until then')).toBeGreaterThan(0);
  expect(median('slowlink', 'B same-connection p50, A downloading')).toBeGreaterThan(0);
  expect(median('slowlink', 'stock ssh -R device, slow device downlink: B same-connection p50, A uploading')).toBeGreaterThan(0);
  // The relay really is a 10 Mbit/s link (1.19 MiB/s), or the scenario measures nothing.
  const a = median('slowlink', 'A download while B runs');
  expect(a).toBeGreaterThan(0);
  expect(a).toBeLessThan(1.5);
}, 240_000);

test('npm run bench -- --quick --only wan runs ours with and without join --fast-open', async () => {
  const out = path.join(tempDir('rab-bench-'), 'results.json');
  await run(process.execPath, [path.join(REPO, 'bench', 'run.js'), '--quick', '--skip-openssh', '--only', 'wan', '--repeats', '1', '--out', out], 150_000);
  const results = JSON.parse(fs.readFileSync(out, 'utf8')) as { scenarios: Array<{ name: string; errors: string[]; rows: Array<{ metric: string; stats: Record<string, { median: number | null }> }> }> };
  const wan = results.scenarios.find((s) => s.name === 'wan');
  expect(wan).toBeDefined();
  expect(wan!.errors).toEqual([]);
  const median = (metric: string, variant: string) => wan!.rows.find((r) => r.metric === metric)?.stats[variant]?.median;
  for (const variant of ['ours', 'ours-fast-open']) {
    expect(median('SOCKS success reply p50', variant)).toBeGreaterThan(0);
    expect(median('first response byte p50', variant)).toBeGreaterThan(0);
  }
  // Ours waits for the device: four 10 ms legs at least. Fast open answers before the
  // device is asked, so it crosses none of them (a structural check, not a speed target).
  const exact = median('SOCKS success reply p50', 'ours')!;
  expect(exact).toBeGreaterThanOrEqual(40);
  expect(median('SOCKS success reply p50', 'ours-fast-open')).toBeLessThan(exact);
}, 200_000);

test('bench/channel-cost.js times an ssh2 channel against a TCP connection per stream', async () => {
  const { stdout } = await run(process.execPath, [path.join(REPO, 'bench', 'channel-cost.js'), '--count', '100', '--repeats', '1'], 60_000);
  const row = (metric: string) => {
    const line = stdout.split('\n').find((l) => l.startsWith(metric));
    expect(line).toBeDefined();
    return line!.slice(metric.length).trim().split(/\s+/);
  };
  const [tcpRate, sshRate, rateRatio] = row('cycles/s');
  expect(Number(tcpRate)).toBeGreaterThan(0);
  expect(Number(sshRate)).toBeGreaterThan(0);
  expect(rateRatio).toMatch(/^\d+\.\d\dx$/);
  // CPU is read from /proc in 10 ms ticks: a short run may see none, never a negative or a non-number
  for (const metric of ['CPU µs per cycle, client', 'CPU µs per cycle, server']) {
    const [tcp, ssh2] = row(metric).map(Number);
    expect(tcp).toBeGreaterThanOrEqual(0);
    expect(ssh2).toBeGreaterThanOrEqual(0);
  }
}, 90_000);

test('bench/turn-cost.js times per-stream pieces once per event-loop turn, builds side by side; a build that is not one is refused', async () => {
  const script = path.join(REPO, 'bench', 'turn-cost.js');
  const { stdout } = await run(process.execPath, [script, '--blocks', '2', '--turns', '5', `build=${REPO}`], 60_000);
  const rows = stdout.split('\n').filter((l) => /^(empty|audit-line|stream-lines|next-tick) /.test(l));
  expect(rows).toHaveLength(8); // 4 pieces x 2 builds
  for (const r of rows) {
    const [active, cpu] = r.slice(42).trim().split(/\s+/).map(Number.parseFloat);
    expect(Number.isFinite(active)).toBe(true);
    expect(Number.isFinite(cpu)).toBe(true);
  }
  // an empty turn costs something; the second build's rows carry a ratio to the first
  expect(Number.parseFloat(rows[0]!.slice(42))).toBeGreaterThan(0);
  expect(rows[3]).toMatch(/\d\.\d\dx$/);
  await expect(run(process.execPath, [script, `build=${tempDir('rab-turn-')}`], 30_000)).rejects.toThrow('not a snapshot with bin/ and a built dist/');
}, 90_000);

test('bench/lib/profile-summary.js maps frames of a bundle back to their sources through the map beside it', async () => {
  const dir = tempDir('rab-prof-');
  const bundle = path.join(dir, 'dist', 'bundle.js');
  fs.mkdirSync(path.dirname(bundle));
  fs.writeFileSync(bundle, 'function a(){}function b(){}\n');
  // line 0: columns 0-13 come from src/first.ts line 3, columns 14- from node_modules/pkg/lib/x.js line 7
  fs.writeFileSync(`${bundle}.map`, JSON.stringify({ version: 3, sources: ['../src/first.ts', '../node_modules/pkg/lib/x.js'], names: [], mappings: 'AAEA,cCIA' }));
  const frame = (id: number, functionName: string, url: string, columnNumber: number) => ({ id, callFrame: { functionName, scriptId: '1', url, lineNumber: 0, columnNumber } });
  const url = `file://${bundle}`;
  const profile = {
    // a (ours) calls b (a package's): b's time is also a's, inclusively
    nodes: [{ ...frame(1, '(root)', '', -1), children: [2, 4] }, { ...frame(2, 'a', url, 2), children: [3] }, frame(3, 'b', url, 20), frame(4, 'c', 'file:///elsewhere/plain.js', 0)],
    startTime: 0, endTime: 4000, samples: [2, 3, 3, 4], timeDeltas: [1000, 1000, 1000, 1000],
  };
  const file = path.join(dir, 'x.cpuprofile');
  fs.writeFileSync(file, JSON.stringify(profile));
  const { stdout } = await run(process.execPath, [path.join(REPO, 'bench', 'lib', 'profile-summary.js'), file], 30_000);
  expect(stdout).toContain('a src/first.ts:3');
  expect(stdout).toContain('b ~/pkg/lib/x.js:7');
  expect(stdout).toMatch(/50\.0%\s+pkg\/lib\/x\.js/);
  expect(stdout).toMatch(/25\.0%\s+src\/first\.ts/);
  // a file with no map beside it keeps its own position
  expect(stdout).toContain('c /elsewhere/plain.js:1');
  // inclusive: a's own sample and b's two under it are a's; c has no frame of ours above it
  const inclusive = stdout.slice(stdout.indexOf('busy time by our innermost function'));
  expect(inclusive).toMatch(/75\.0%\s+a src\/first\.ts:3/);
  expect(inclusive).toMatch(/25\.0%\s+\(no frame of ours\)/);
}, 60_000);

test('bench/lib/kernel-trace-summary.js reads a tracer\'s output into turns, writes, waits for a core and CPU per connection', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { summarise, render } = require(path.join(REPO, 'bench', 'lib', 'kernel-trace-summary.js')) as {
    summarise: (text: string, o: { roles: Record<number, string>; threads: Record<number, string>; count: number; cpus?: number; order?: string[] }) => { rows: Array<Record<string, number | string>>; busyShare: number };
    render: (s: unknown, count: number) => string;
  };
  const sw = (cpu: number, t: string, prev: number, next: number) => `  x-${prev} [00${cpu}] d..2. ${t}: sched_switch: prev_comm=a prev_pid=${prev} prev_prio=120 prev_state=S ==> next_comm=b next_pid=${next} next_prio=120`;
  const sys = (pid: number, t: string, what: string) => `  node-${pid} [000] ..... ${t}: ${what}`;
  const trace = [
    '# tracer: nop',
    sw(0, '9.999900', 100, 0), // the broker sleeps: cpu 0 idle from here
    sw(1, '10.000000', 999, 101), // a thread of the broker's runs on cpu 1
    '  <idle>-0 [000] dNh2. 10.000000: sched_wakeup: comm=node pid=100 prio=120 target_cpu=000',
    sw(1, '10.000100', 101, 0), // 100 µs of the broker's other thread
    sw(0, '10.000150', 0, 100), // woken at 10.000000, on a core 150 µs later
    sys(100, '10.000160', 'sys_exit: NR 281 = 1'), // epoll returned events: a turn starts
    sys(100, '10.000200', 'sys_enter: NR 0 (12, 0, 0)'), // read
    sys(555, '10.000205', 'sys_enter: NR 1 (3, 0, 0)'), // not one of ours
    sys(100, '10.000210', 'sys_enter: NR 1 (13, 0, 0)'), // its first write, 50 µs in
    sys(100, '10.000220', 'sys_enter: NR 20 (13, 0, 0)'),
    sys(100, '10.000300', 'sys_enter: NR 281 (5, 0, 0)'), // back to epoll: a 140 µs turn
    sw(0, '10.000310', 100, 0),
  ].join('\n');
  const s = summarise(trace, { roles: { 100: 'broker', 200: 'helper' }, threads: { 100: 'broker', 101: 'broker', 200: 'helper' }, count: 1, cpus: 2, order: ['helper', 'broker'] });
  expect(s.rows.map((r) => r.role)).toEqual(['helper', 'broker']);
  const broker = s.rows[1]!;
  expect(broker).toMatchObject({ turnsPerConn: 1, keptWaitingPerConn: 1 });
  expect(broker.cpuUsPerConn).toBeCloseTo(160 + 100, 3); // its main thread and its other thread
  expect(broker.turnUsMedian).toBeCloseTo(140, 3);
  expect(broker.toFirstWriteUsMedian).toBeCloseTo(50, 3);
  expect(broker.afterFirstWriteUsPerConn).toBeCloseTo(90, 3);
  expect(broker.keptWaitingUsPerConn).toBeCloseTo(150, 3);
  expect(s.busyShare).toBeCloseTo(1 - 250 / (410 * 2), 3); // cpu 0 idle 250 µs of 410, on 2 CPUs
  expect(s.rows[0]).toMatchObject({ role: 'helper', turnsPerConn: 0, cpuUsPerConn: 0 });
  const table = render(s, 1);
  expect(table).toMatch(/^broker\s+260\s+1\.0\s+140\s+50\s+90\s+1\.00\s+150$/m);
  expect(table).toContain('busy 69.5 %');
});

test('bench/kernel-trace.js traces a chain\'s connections and prints a row per process (CI runs as root, where tracefs can be mounted)', async () => {
  const script = path.join(REPO, 'bench', 'kernel-trace.js');
  const { stdout } = await run(process.execPath, [script, '--warm', '50', '--count', '20'], 90_000);
  for (const role of ['broker', 'agent', 'helper', 'target', 'client']) {
    const line = stdout.split('\n').find((l) => l.startsWith(`${role} `));
    expect(line).toBeDefined();
    const [cpu, turns] = line!.slice(role.length).trim().split(/\s+/).map(Number);
    expect(cpu).toBeGreaterThan(0);
    expect(turns).toBeGreaterThan(0);
  }
  expect(stdout).toMatch(/the \d+ CPUs were busy \d+\.\d %/);
  // the tracer is off again, with no event left enabled
  expect(fs.readFileSync('/sys/kernel/tracing/events/sched/sched_switch/enable', 'utf8').trim()).toBe('0');
  expect(fs.readFileSync('/sys/kernel/tracing/set_event_pid', 'utf8').trim()).toBe('');
  await expect(run(process.execPath, [script, `build=${tempDir('rab-ktrace-')}`], 30_000)).rejects.toThrow('not a snapshot with bin/ and a built dist/');
}, 120_000);

test('bench/ab.js runs variants side by side, each with its own settings, and rejects a malformed one', async () => {
  const ab = path.join(REPO, 'bench', 'ab.js');
  const { stdout, stderr } = await run(process.execPath, [ab, 'connections', '--repeats', '2', '--count', '30', '', 'BROKER_STREAM_WINDOW=0,--max-semi-space-size=8'], 120_000);
  for (const label of ['default', 'BROKER_STREAM_WINDOW=0,--max-semi-space-size=8']) {
    const l = summaryLine(stdout, label);
    expect(l).toBeDefined();
    const [rate, p50, p99] = medians(l!, label).map((x) => Number.parseFloat(x));
    expect(rate).toBeGreaterThan(0);
    expect(p50).toBeGreaterThan(0);
    expect(p99).toBeGreaterThanOrEqual(p50!);
    expect(l).toMatch(/CPU per 1000 conns: broker \d/);
  }
  // the runs took turns: 2 repeats x 2 variants, each reported as it finished
  expect(stderr.match(/^\[ab\] connections run \d\/2 /gm)).toHaveLength(4);
  await expect(run(process.execPath, [ab, 'connections', 'not-a-setting'], 30_000)).rejects.toThrow('variant setting "not-a-setting": expected NAME=VALUE or --flag');

  // --link: the chain reaches its broker through a paced relay (here 20 Mbit/s, 2.38 MiB/s).
  const linked = await run(process.execPath, [ab, 'download', '--link', '20,5', '--mib', '2', '--repeats', '1', ''], 120_000);
  const rate = Number.parseFloat(medians(summaryLine(linked.stdout)!)[0]!);
  expect(rate).toBeGreaterThan(0);
  expect(rate).toBeLessThan(2.9);
  await expect(run(process.execPath, [ab, 'download', '--link', '20', ''], 30_000)).rejects.toThrow('--link needs MBIT,MS');
}, 180_000);

test('bench/ab.js --snapshot keeps a build that a build= variant then runs; a missing build is refused', async () => {
  const ab = path.join(REPO, 'bench', 'ab.js');
  const tmp = tempDir('rab-ab-snap-');
  const snap = path.join(tmp, 'before');
  const made = await run(process.execPath, [ab, '--snapshot', snap], 60_000);
  expect(made.stdout).toContain(`copied to ${snap}`);
  expect(fs.existsSync(path.join(snap, 'dist', 'cli', 'main.js'))).toBe(true);
  expect(fs.existsSync(path.join(snap, 'bin', 'broker'))).toBe(true);
  await expect(run(process.execPath, [ab, '--snapshot', snap], 30_000)).rejects.toThrow('already exists');

  const { stdout } = await run(process.execPath, [ab, 'connections', '--repeats', '1', '--count', '20', `build=${snap}`, ''], 120_000);
  for (const label of [`build=${snap}`, 'default']) {
    const l = summaryLine(stdout, label);
    expect(l).toBeDefined();
    expect(Number.parseFloat(medians(l!, label)[0]!)).toBeGreaterThan(0);
  }
  await expect(run(process.execPath, [ab, 'connections', `build=${path.join(tmp, 'nothing')}`], 30_000)).rejects.toThrow('no bin/broker and dist/cli/main.js there');

  // --fresh: every run on a chain of its own, its CPU read before the chain stops
  const fresh = await run(process.execPath, [ab, 'connections', '--fresh', '--repeats', '2', '--count', '20', ''], 120_000);
  const pids = [...fresh.stderr.matchAll(/^\[ab\] connections run \d\/2 default \(new chain, broker pid (\d+)\): /gm)].map((m) => m[1]);
  expect(pids).toHaveLength(2);
  expect(new Set(pids).size).toBe(2);
  expect(fresh.stdout).toMatch(/^default .* CPU per 1000 conns: broker \d+, agent \d+, helper \d+; page faults: broker \d+, agent \d+, helper \d+$/m);
  // first: a fresh chain's warm-up curve, ms until the 20th / 100th / 500th / last connection
  const first = await run(process.execPath, [ab, 'first', '--repeats', '1', '--count', '30', ''], 120_000);
  expect(first.stderr).toMatch(/^\[ab\] first run 1\/1 default \(new chain, broker pid \d+\): /m);
  const curve = medians(summaryLine(first.stdout)!);
  expect(curve[1]).toBe('-'); // fewer than 100 connections
  expect(curve[2]).toBe('-');
  const [to20, toLast] = [Number.parseFloat(curve[0]!), Number.parseFloat(curve[3]!)];
  expect(to20).toBeGreaterThan(0);
  expect(toLast).toBeGreaterThan(to20);

  // start: a new join per run, ms to its ready line, then to its first answer, and its CPU
  const started = await run(process.execPath, [ab, 'start', '--repeats', '1', `build=${snap}`], 120_000);
  const [ready, answered, cpu] = medians(summaryLine(started.stdout, `build=${snap}`)!, `build=${snap}`).map((x) => Number.parseFloat(x));
  expect(ready).toBeGreaterThan(20);
  expect(answered).toBeGreaterThan(ready!);
  expect(cpu).toBeGreaterThan(0);

  // latency: tiny requests alone, p50 <= p99 on one connection and on new ones
  const lat = await run(process.execPath, [ab, 'latency', '--repeats', '1', '--count', '30', ''], 120_000);
  const ll = summaryLine(lat.stdout)!;
  const [p50, p99, newP50, newP99] = medians(ll).map((x) => Number.parseFloat(x));
  expect(p50).toBeGreaterThan(0);
  expect(p99).toBeGreaterThanOrEqual(p50!);
  expect(newP50).toBeGreaterThan(0);
  expect(newP99).toBeGreaterThanOrEqual(newP50!);
  expect(ll).toMatch(/CPU per 1000 requests: broker \d+, agent \d+, helper \d+; page faults: broker \d+, agent \d+, helper \d+$/);

  // the concurrency scenario: requests/s, request p99, open p99
  const conc = await run(process.execPath, [ab, 'concurrency', '--repeats', '1', '--conns', '10', ''], 120_000);
  const l = summaryLine(conc.stdout)!;
  const [rps, reqP99, openP99] = medians(l).map((x) => Number.parseFloat(x));
  expect(rps).toBeGreaterThan(0);
  expect(reqP99).toBeGreaterThan(0);
  expect(openP99).toBeGreaterThan(0);
  expect(l).toMatch(/CPU per 1000 requests: broker \d/);
}, 180_000);

#!/usr/bin/env node
'use strict';
/**
 * Interleaved A/B runs of our chain under different settings: the tool behind the
 * "A/B" figures in commit messages and docs/performance.md.
 *
 * The full suite (run.js) compares us with OpenSSH; this compares us with us. On a
 * shared, noisy machine two configurations can only be compared side by side: each
 * variant gets its own chain of fresh processes (broker + expose + join), all are
 * started first, and the repeats then take turns (A B C, A B C, ...), so load
 * changes on the machine hit every variant alike. Medians and every run's value
 * are printed, with CPU and minor page faults per unit of work for each of our processes.
 *
 *   node bench/ab.js SCENARIO [options] VARIANT [VARIANT...]
 *
 * SCENARIO  download | upload   MiB/s for --streams parallel streams of --mib MiB each
 *           connections         sequential new connections: conn/s, p50, p99 (ms)
 *           concurrency         --conns connections at once, 20 tiny requests each:
 *                               requests/s, request p99, open p99 (ms)
 *           fairness            helper B's tiny request p50/p99 (one connection, then
 *                               new ones) while helper A downloads (or uploads), and A's MiB/s
 *           latency             tiny request p50/p99 on one connection, then on new
 *                               ones, with nothing else running (fairness without A)
 *           first               a fresh chain's first --count sequential new connections:
 *                               ms until the 20th, 100th, 500th and last is answered
 *                               (always on new processes, as with --fresh)
 *           start               a helper's start: a new `broker-agent join` against the
 *                               chain's broker and device, ms until it prints `ready`, ms
 *                               until a tiny request through it is answered, and its CPU ms
 * VARIANT   comma-separated settings for our processes; "" (or "default") for none:
 *             NAME=VALUE   environment variable (e.g. BROKER_STREAM_WINDOW=0)
 *             --flag       node/V8 command-line flag (e.g. --max-semi-space-size=8)
 *             build=DIR    run this variant from another build: a snapshot made
 *                          with --snapshot (default: this checkout's bin/ and dist/)
 * Options   --repeats N (5)  --streams N (1)  --mib N (256)  --count N (2000)  --conns N (200)
 *           --settle MS (300)  how long A downloads before B starts (fairness)
 *           --link MBIT,MS[,DEVICE_MBIT]  every chain's helpers and device reach its
 *                            broker through a link of MBIT Mbit/s each way per connection
 *                            and MS ms each way (bench/lib/delay-relay.js): a slow uplink;
 *                            DEVICE_MBIT gives the device's leg its own rate (0: delay only)
 *           --same-helper    fairness: B's requests go through A's helper (one browser)
 *           --upload         fairness: A uploads instead of downloading
 *           --stock-device   the device is a stock `ssh -R 0 expose@broker`, not broker-agent expose
 *           --fresh          every run gets a chain of new processes, started just before it:
 *                            what a helper's first connections see (V8 has optimised nothing yet)
 *           --snapshot DIR   copy this checkout's current build to DIR and exit
 *           --help
 *
 * Examples: node bench/ab.js download --streams 8 '' BROKER_STREAM_WINDOW=0
 *           node bench/ab.js --snapshot /tmp/before   (then change src/, npm run build)
 *           node bench/ab.js connections build=/tmp/before ''
 *           node bench/ab.js fairness --link 10,10 --settle 3000 --count 20 build=/tmp/before ''
 *           node bench/ab.js connections --fresh build=/tmp/before ''
 * Needs dist/ (npm run build). Traffic stays on 127.0.0.1.
 */
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const procs = require('./lib/procs');
const ours = require('./lib/ours');
const client = require('./lib/client');
const { median, usage } = require('./lib/util');
const { rotated } = require('./lib/scenarios');
const { snapshotCode, isRunnableCode, ROOT } = require('./lib/snapshot');
const { probe } = require('./lib/openssh');

const SCENARIOS = {
  download: { unit: 'MiB/s', helpers: 1, run: (c, o) => bulk(client.bulkDownload, c, o) },
  upload: { unit: 'MiB/s', helpers: 1, run: (c, o) => bulk(client.bulkUpload, c, o) },
  connections: { unit: 'conn/s, p50 ms, p99 ms', helpers: 1, run: connections },
  concurrency: { unit: 'requests/s, request p99 ms, open p99 ms', helpers: 1, run: concurrency },
  fairness: { unit: 'B p50, B p99, B new p50, B new p99 (ms), A MiB/s', helpers: 2, run: fairness },
  latency: { unit: 'p50, p99, new p50, new p99 (ms)', helpers: 1, run: latency },
  first: { unit: 'ms until the 20th / 100th / 500th / last connection', helpers: 1, run: firstConnections, fresh: true },
  start: { unit: 'ms to ready, ms to first response, join CPU ms', helpers: 1, run: joinStart },
};

/** Parse one VARIANT argument into { label, env, nodeArgs, build }. */
function parseVariant(text) {
  const env = {};
  const nodeArgs = [];
  let build = ROOT;
  const parts = text === 'default' ? [] : text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const part of parts) {
    if (part.startsWith('--')) nodeArgs.push(part);
    else if (part.startsWith('build=')) {
      build = path.resolve(part.slice('build='.length));
      if (!isRunnableCode(build)) throw new Error(`variant setting "${part}": no bin/broker and dist/cli/main.js there (make one with --snapshot DIR)`);
    }
    else if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(part)) env[part.slice(0, part.indexOf('='))] = part.slice(part.indexOf('=') + 1);
    else throw new Error(`variant setting "${part}": expected NAME=VALUE or --flag`);
  }
  return { label: parts.length ? parts.join(',') : 'default', env, nodeArgs, build };
}

async function bulk(fn, chain, o) {
  const r = await fn({ socks: chain.socks, target: o.target, streams: o.streams, bytes: o.mib * 1048576, deadlineMs: 120_000 });
  if (r.partial) throw new Error('transfer did not complete before its deadline');
  return { values: [r.MiBps], work: r.bytes / 1073741824, workUnit: 'GiB' };
}

async function connections(chain, o) {
  const r = await client.connSetup({ socks: chain.socks, target: o.target, count: o.count, deadlineMs: 120_000 });
  if (r.errors) throw new Error(`${r.errors} connections failed (first: ${r.firstError})`);
  return { values: [r.connPerSec, r.p50, r.p99], work: r.n / 1000, workUnit: '1000 conns' };
}

/** Cumulative ms to the 20th, 100th, 500th and --count-th sequential connection (a fresh chain's warm-up curve). */
async function firstConnections(chain, o) {
  const edges = [20, 100, 500].filter((n) => n < o.count).concat(o.count);
  const at = [];
  const start = performance.now();
  let done = 0;
  for (const edge of edges) {
    const r = await client.connSetup({ socks: chain.socks, target: o.target, count: edge - done, deadlineMs: 120_000 });
    if (r.errors) throw new Error(`${r.errors} connections failed (first: ${r.firstError})`);
    done = edge;
    at.push(performance.now() - start);
  }
  return { values: [20, 100, 500].map((n) => at[edges.indexOf(n)]).concat(at.at(-1)), work: o.count / 1000, workUnit: '1000 conns' };
}

async function concurrency(chain, o) {
  const r = await client.concurrency({ socks: chain.socks, target: o.target, conns: o.conns, reqs: 20, deadlineMs: 120_000 });
  if (r.errors) throw new Error(`${r.errors} connections failed`);
  return { values: [r.reqPerSec, r.request.p99, r.open.p99], work: r.requests / 1000, workUnit: '1000 requests' };
}

/** Helper B's clicks: --count tiny requests on one connection, then this many on new ones. */
const freshCount = (o) => Math.max(10, Math.round(o.count / 7));

function tinyRequests(socks, o) {
  return client.tinyLatency({ socks, target: o.target, persistent: o.count, fresh: freshCount(o), deadlineMs: 60_000 });
}

async function fairness(chain, o) {
  let release;
  const held = new Promise((r) => { release = r; });
  const download = client.bulkUntilStopped({ socks: chain.socks, target: o.target, upload: o.upload }, () => held);
  await new Promise((r) => setTimeout(r, o.settle)); // let A's download reach speed
  const b = await tinyRequests(o.sameHelper ? chain.socks : chain.socksB, o);
  release();
  const a = await download;
  return { values: [b.persistent?.p50, b.persistent?.p99, b.fresh?.p50, b.fresh?.p99, a.MiBps], work: a.bytes / 1073741824, workUnit: 'GiB of A' };
}

async function latency(chain, o) {
  const b = await tinyRequests(chain.socks, o);
  return { values: [b.persistent?.p50, b.persistent?.p99, b.fresh?.p50, b.fresh?.p99], work: (o.count + freshCount(o)) / 1000, workUnit: '1000 requests' };
}

/** A new `broker-agent join` beside the chain (its build and settings): spawn to `ready`, to a first answer, and its CPU. */
async function joinStart(chain, o) {
  const start = performance.now();
  const child = chain.newHelper(0, { pipeStdout: true });
  try {
    const ready = await procs.waitForJsonLine(child, (ev) => ev.event === 'ready', 30_000, 'join');
    const readyMs = performance.now() - start;
    await probe(ours.parseHostPort(ready.socks), o.target, 10_000);
    const firstMs = performance.now() - start;
    return { values: [readyMs, firstMs, usage(child.pid).cpuMs], work: 1, workUnit: 'start' };
  } finally {
    await procs.stop(child);
  }
}

function fmt(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3);
}

async function main() {
  // Hand-parsed: a variant may itself start with "--" (a node flag), which a generic parser would reject.
  const opts = { repeats: '5', streams: '1', mib: '256', count: '2000', conns: '200', settle: '300', link: undefined, snapshot: undefined, help: false, sameHelper: false, upload: false, stockDevice: false, fresh: false };
  const positionals = [];
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(repeats|streams|mib|count|conns|settle|link|snapshot)(?:=(.*))?$/.exec(argv[i]);
    if (m) opts[m[1]] = m[2] ?? argv[++i];
    else if (argv[i] === '--help' || argv[i] === '-h') opts.help = true;
    else if (argv[i] === '--same-helper') opts.sameHelper = true;
    else if (argv[i] === '--upload') opts.upload = true;
    else if (argv[i] === '--stock-device') opts.stockDevice = true;
    else if (argv[i] === '--fresh') opts.fresh = true;
    else positionals.push(argv[i]);
  }
  if (opts.snapshot) {
    if (fs.existsSync(opts.snapshot)) throw new Error(`--snapshot ${opts.snapshot}: already exists; pick a new directory`);
    const code = snapshotCode(path.resolve(opts.snapshot));
    process.stdout.write(`build of ${code.distBuiltAt} copied to ${code.dir}${code.srcNewerThanDist ? ' (NOTE: src/ has newer files than dist/: was npm run build forgotten?)' : ''}\n`);
    return;
  }
  const [name, ...variantArgs] = positionals;
  if (opts.help || !SCENARIOS[name] || variantArgs.length === 0) {
    const doc = fs.readFileSync(__filename, 'utf8').split('/**')[1].split('*/')[0].replace(/^ \* ?/gm, '');
    process.stdout.write(doc.trim() + '\n');
    process.exit(opts.help ? 0 : 2);
  }
  const scenario = SCENARIOS[name];
  const o = { repeats: Number(opts.repeats), streams: Number(opts.streams), mib: Number(opts.mib), count: Number(opts.count), conns: Number(opts.conns), settle: Number(opts.settle) };
  for (const [k, v] of Object.entries(o)) if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer`);
  o.sameHelper = opts.sameHelper;
  o.upload = opts.upload;
  const link = opts.link === undefined ? undefined : opts.link.split(',').map(Number);
  if (link && !((link.length === 2 || link.length === 3) && link[0] > 0 && link[1] >= 0 && (link[2] ?? 0) >= 0)) throw new Error('--link needs MBIT,MS[,DEVICE_MBIT] (e.g. 10,10)');
  const variants = variantArgs.map(parseVariant);
  if (!isRunnableCode(ROOT)) throw new Error('dist/ is missing: run npm run build first');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ab-'));
  const t = procs.startNode(path.join(__dirname, 'lib', 'target-server.js'), [], { name: 'target', logFile: path.join(dir, 'target.log') });
  o.target = await new Promise((resolve) => t.once('message', (m) => resolve({ host: '127.0.0.1', port: m.port })));
  const startVariantChain = async (i, chainDir) => {
    const v = variants[i];
    process.env.BENCH_CODE_DIR = v.build; // read by ours.js when it spawns this chain
    const chainOpts = { helpers: scenario.helpers, env: v.env, nodeArgs: () => v.nodeArgs, stockDevice: opts.stockDevice };
    if (link) {
      // Its own broker, reached through the link relay by the helpers and the device.
      const broker = await ours.startBroker(chainDir, { nodeArgs: v.nodeArgs, env: v.env });
      const bytesPerS = (mbit) => String((mbit * 1e6) / 8);
      const rates = `${bytesPerS(link[0])},${bytesPerS(link[2] ?? link[0])}`; // helpers' leg, device's leg
      const relay = procs.startNode(path.join(__dirname, 'lib', 'delay-relay.js'), [String(link[1]), `${broker.port},${broker.port}`, rates], { name: `link-relay-${i}`, logFile: path.join(dir, `relay-${i}.log`) });
      const ports = await new Promise((resolve) => relay.once('message', (m) => resolve(m.ports)));
      Object.assign(chainOpts, { broker, helperAddress: `127.0.0.1:${ports[0]}`, deviceAddress: `127.0.0.1:${ports[1]}` });
      const chain = await ours.startChain(chainDir, o.target, chainOpts);
      return { ...chain, close: async () => { await chain.close(); await procs.stop(relay); await procs.stop(broker.child, 5000); } };
    }
    return ours.startChain(chainDir, o.target, chainOpts);
  };
  // Started first, so load changes on the machine hit every variant alike (--fresh: one per run instead).
  if (scenario.fresh) opts.fresh = true;
  const chains = [];
  if (!opts.fresh) for (const i of variants.keys()) chains.push(await startVariantChain(i, path.join(dir, String(i))));
  const results = variants.map(() => ({ runs: [], cpu: {}, faults: {} }));
  for (let rep = 0; rep < o.repeats; rep++) {
    for (const i of rotated([...variants.keys()], rep)) { // who goes first rotates
      const chain = opts.fresh ? await startVariantChain(i, path.join(dir, `${i}-${rep}`)) : chains[i];
      const roles = chain.roles();
      const before = Object.fromEntries(Object.entries(roles).map(([r, pid]) => [r, usage(pid)]));
      const r = await scenario.run(chain, o);
      results[i].runs.push(r.values);
      results[i].workUnit = r.workUnit;
      for (const [role, pid] of Object.entries(roles)) {
        const now = usage(pid);
        (results[i].cpu[role] ??= []).push((now.cpuMs - before[role].cpuMs) / r.work);
        (results[i].faults[role] ??= []).push((now.minorFaults - before[role].minorFaults) / r.work);
      }
      if (opts.fresh) await chain.close();
      const fresh = opts.fresh ? ` (new chain, broker pid ${roles.broker})` : '';
      process.stderr.write(`[ab] ${name} run ${rep + 1}/${o.repeats} ${variants[i].label}${fresh}: ${r.values.map(fmt).join(' ')}\n`);
    }
  }
  process.stdout.write(`\n${name} (${scenario.unit}); medians of ${o.repeats} interleaved runs, then every run's first value; CPU ms and minor page faults per unit of work\n`);
  const width = Math.max(...variants.map((v) => v.label.length));
  for (const [i, v] of variants.entries()) {
    const res = results[i];
    const med = res.runs[0].map((_, j) => fmt(median(res.runs.map((x) => x[j]))));
    const perRole = (m) => Object.entries(m).map(([role, xs]) => `${role} ${fmt(median(xs))}`).join(', ');
    process.stdout.write(`${v.label.padEnd(width)}  ${med.join(' / ')}   runs [${res.runs.map((x) => fmt(x[0])).join(' ')}]   CPU per ${res.workUnit}: ${perRole(res.cpu)}; page faults: ${perRole(res.faults)}\n`);
  }
  for (const c of chains) await c.close();
  await procs.stopAll();
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((err) => {
  process.stderr.write(`bench/ab.js: ${err.message}\n`);
  procs.killAllSync();
  process.exit(1);
});

#!/usr/bin/env node
'use strict';
/**
 * Benchmark: direct vs the OpenSSH chain (ssh -R dynamic + ssh -L, both "-N" and
 * "-tt ... sleep") vs ours (broker + expose + join), side by side, on loopback; with
 * "plain-node" (ours' shape as plain Node TCP relays, no SSH) as the Node floor.
 *
 *   npm run bench                       full run (sizes from the issue)
 *   npm run bench -- --quick            small sizes, about 5 minutes (a smoke test)
 *   npm run bench -- --only bulk,wan    some scenarios only
 *
 * Options: --quick, --only LIST, --repeats N (override every scenario's repeat
 * count), --skip-openssh, --keep-tmp, --out FILE, --cpu-prof (write V8 CPU
 * profiles of the broker, agent and helper of the main "ours" chain to
 * bench/results/profiles/), --help.
 * See bench/README.md. Traffic stays on 127.0.0.1.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execSync } = require('node:child_process');
const procs = require('./lib/procs');
const { machineInfo } = require('./lib/util');
const { snapshotCode } = require('./lib/snapshot');
const { Results, renderTable, LEGEND } = require('./lib/report');

const ROOT = path.resolve(__dirname, '..');
const RESULTS_DIR = path.join(__dirname, 'results');

const TITLES = {
  bulk: 'bulk transfer (1 stream and 8 parallel streams, download and upload)',
  connections: 'connection setup (sequential new connections, one tiny request each)',
  concurrency: 'concurrency (concurrent connections x requests; idle streams held open)',
  fairness: 'fairness (helper B tiny requests while helper A downloads, then uploads, through the same device)',
  memory: 'memory (server memory per idle session and per open stream)',
  wan: 'emulated WAN (10 ms each way on both legs; time to greeting, success, first byte; downloads alone, beside an idle connection and two at once; an upload; bursts)',
  slowlink: 'slow link (10 Mbit/s each way per connection, 10 ms each way per leg): helper B\'s tiny requests and new connections while helper A downloads; then one helper on a slow link; then A uploads over a slow device downlink (also with a stock ssh -R device) and over one helper\'s slow uplink',
  httpfront: 'HTTP proxy front-end vs SOCKS front-end (small keep-alive requests)',
  start: 'helper start (a new broker-agent join / ssh -L, spawn to the first answer through it)',
};

function parseArgs(argv) {
  const o = { quick: false, only: null, repeats: null, skipOpenssh: false, keepTmp: false, out: null, cpuProf: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { const v = argv[++i]; if (v === undefined) throw usage(`${a} needs a value`); return v; };
    if (a === '--quick') o.quick = true;
    else if (a === '--only') o.only = val().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a.startsWith('--only=')) o.only = a.slice(7).split(',').filter(Boolean);
    else if (a === '--repeats') o.repeats = Number(val());
    else if (a === '--skip-openssh') o.skipOpenssh = true;
    else if (a === '--keep-tmp') o.keepTmp = true;
    else if (a === '--out') o.out = val();
    else if (a === '--cpu-prof') o.cpuProf = true;
    else if (a === '--help' || a === '-h') { process.stdout.write(`${fs.readFileSync(__filename, 'utf8').split('*/')[0].replace(/^[\s\S]*?\/\*\*\n/, '').replace(/^ \* ?/gm, '')}\n`); process.exit(0); }
    else throw usage(`unknown option ${a} (see --help)`);
  }
  for (const s of o.only ?? []) if (!TITLES[s]) throw usage(`unknown scenario "${s}"; scenarios: ${Object.keys(TITLES).join(', ')}`);
  if (o.repeats !== null && !(Number.isInteger(o.repeats) && o.repeats > 0)) throw usage('--repeats needs a positive integer');
  return o;
}

function usage(message) {
  return Object.assign(new Error(message), { usage: true });
}

function sizesFor(o) {
  const full = {
    bulkBytes: 1024 ** 3, connCount: 2000, connWarmup: 2000, concConns: 200, concReqs: 20, idleStreams: 2000,
    fairPersistent: 2000, fairFresh: 300, memSessions: 1000, osshSessions: 200, memStreams: 1000,
    wanConns: 40, wanDelayMs: 10, wanDownloadMiB: 32, wanBurst: 16,
    slowRateMbit: 10, slowDelayMs: 10, slowSettleMs: 3000, slowPersistent: 10, slowFresh: 4,
    httpRequests: 1000,
    repeats: { bulk: 3, connections: 3, concurrency: 3, fairness: 3, wan: 1, slowlink: 2, httpfront: 5, start: 10 },
    jobCapMs: 120_000,
    budgetS: { bulk: 900, connections: 450, concurrency: 600, fairness: 900, memory: 400, wan: 400, slowlink: 1100, httpfront: 200, start: 120 },
  };
  const quick = {
    bulkBytes: 64 * 1024 ** 2, connCount: 200, connWarmup: 100, concConns: 50, concReqs: 10, idleStreams: 200,
    fairPersistent: 200, fairFresh: 30, memSessions: 100, osshSessions: 20, memStreams: 200,
    wanConns: 10, wanDelayMs: 10, wanDownloadMiB: 4, wanBurst: 8,
    slowRateMbit: 10, slowDelayMs: 10, slowSettleMs: 1000, slowPersistent: 3, slowFresh: 1,
    httpRequests: 200,
    repeats: { bulk: 1, connections: 1, concurrency: 1, fairness: 1, wan: 1, slowlink: 1, httpfront: 2, start: 2 },
    jobCapMs: 20_000,
    budgetS: { bulk: 40, connections: 25, concurrency: 30, fairness: 30, memory: 40, wan: 90, slowlink: 150, httpfront: 30, start: 30 },
  };
  const s = o.quick ? quick : full;
  if (o.repeats) for (const k of Object.keys(s.repeats)) s.repeats[k] = o.repeats;
  return s;
}

function ensureBuilt(log) {
  const need = ['dist/cli/main.js', 'dist/agent/agent.js', 'dist/protocol/descriptor.js'];
  if (need.every((f) => fs.existsSync(path.join(ROOT, f)))) return;
  log('dist/ is missing: running npm run build ...');
  execSync('npm run build', { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const log = (msg) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
  ensureBuilt(log);
  // required only now: ours.js and friends need dist/ to exist
  const { SCENARIOS } = require('./lib/scenarios');
  const ossh = require('./lib/openssh');
  const ours = require('./lib/ours');
  const plainNode = require('./lib/plain-node');

  const sizes = sizesFor(opts);
  const names = opts.only ?? Object.keys(SCENARIOS);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-'));
  // Interrupted (SIGINT/SIGTERM -> procs exits): remove the temp dir too, unless asked to keep it.
  let keepDir = opts.keepTmp;
  process.on('exit', () => { if (!keepDir) { try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* ignore */ } } });
  process.on('bench-failed', () => { keepDir = true; });
  const machine = machineInfo();
  log(`machine: ${machine.nproc} x ${machine.cpu}, node ${machine.node}, load average ${machine.loadavg.join(' ')}; temp dir ${dir}`);
  if (machine.loadavg[0] > machine.nproc * 0.5) log('note: the machine is busy (load average above half the CPUs); expect noisy numbers');
  log(`scenarios: ${names.join(', ')}${opts.quick ? ' (quick sizes)' : ''}`);
  const code = snapshotCode(path.join(dir, 'code'));
  process.env.BENCH_CODE_DIR = code.dir;
  log(`code under test: dist/ built ${code.distBuiltAt}${code.srcNewerThanDist ? ' (NOTE: src/ has newer files than dist/; run npm run build to measure them)' : ''}, snapshot in ${code.dir}`);

  // target server in its own process
  const target = await new Promise((resolve, reject) => {
    const t = procs.startNode(path.join(__dirname, 'lib', 'target-server.js'), [], { name: 'target', logFile: path.join(dir, 'target.log') });
    t.once('message', (m) => resolve({ host: '127.0.0.1', port: m.port }));
    t.once('exit', (c) => reject(new Error(`target server exited (${c})`)));
  });

  let sshd = null;
  if (!opts.skipOpenssh) {
    try {
      sshd = await ossh.startSshd(path.join(dir, 'sshd'), { log });
      log(`private sshd on 127.0.0.1:${sshd.port}`);
    } catch (err) {
      log(`OpenSSH baseline unavailable: ${err.message}`);
    }
  }

  const profDir = path.join(RESULTS_DIR, 'profiles', new Date().toISOString().replace(/[:.]/g, '-'));
  let variantsPromise = null;
  const variants = () => {
    variantsPromise ??= (async () => {
      const list = [{ name: 'direct', socks: null, socksB: null, pids: () => [] }];
      log('starting the plain-node chain (our chain\'s shape as plain Node TCP relays, no SSH)');
      list.push(await plainNode.startChain(path.join(dir, 'plain-node'), target));
      if (sshd) {
        for (const variant of ['N', 'tt']) {
          log(`starting OpenSSH chain (${variant === 'N' ? 'ssh -N' : 'ssh -tt ... sleep'}, ${ossh.CIPHER})`);
          list.push(await ossh.startChain(sshd, target, { variant, helpers: 2 }));
        }
      }
      log('starting our chain (broker serve + broker-agent expose + 2x broker-agent join)');
      if (opts.cpuProf) fs.mkdirSync(profDir, { recursive: true });
      const nodeArgs = (role) => (opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${role}.cpuprofile`] : []);
      list.push(await ours.startChain(path.join(dir, 'ours'), target, { helpers: 2, nodeArgs }));
      return list;
    })();
    return variantsPromise;
  };

  const ctx = { sizes, variants, target, sshd, dir, log, opts };
  const summaries = [];
  for (const name of names) {
    const res = new Results(name, TITLES[name]);
    const t0 = Date.now();
    log(`--- scenario ${name} ---`);
    try {
      await SCENARIOS[name](ctx, res);
    } catch (err) {
      res.error(`scenario aborted: ${err && err.stack ? err.stack.split('\n').slice(0, 3).join(' | ') : err}`);
      res.partial('scenario aborted by an error');
    }
    const sum = res.summarize();
    sum.durationS = (Date.now() - t0) / 1000;
    summaries.push(sum);
    process.stdout.write(`\n${renderTable(sum)}\n`);
  }

  // stop the main chains first (profiles are written on a clean exit)
  if (variantsPromise) {
    const list = await variantsPromise.catch(() => []);
    for (const v of list) if (v.close) await v.close();
  }
  if (sshd) await sshd.close();
  await procs.stopAll();

  const out = {
    tool: 'remote-assist-broker bench',
    startedAt: new Date(started).toISOString(),
    durationS: (Date.now() - started) / 1000,
    machine,
    loadavgAtEnd: require('node:os').loadavg().map((x) => Number(x.toFixed(2))),
    options: opts,
    sizes,
    code: { ...codeInfo(), distBuiltAt: code.distBuiltAt, srcNewerThanDist: code.srcNewerThanDist },
    openssh: sshd ? { version: safe(() => execSync('ssh -V 2>&1').toString().trim()), cipher: ossh.CIPHER } : null,
    scenarios: summaries,
  };
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = opts.out ?? path.join(RESULTS_DIR, `${new Date(started).toISOString().replace(/[:.]/g, '-')}${opts.quick ? '-quick' : ''}.json`);
  fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(`\n${LEGEND}\nmachine: ${machine.nproc} x ${machine.cpu}, ${machine.memMiB} MiB, Linux ${machine.kernel}, node ${machine.node}${out.openssh ? `, ${out.openssh.version}` : ''}\n`);
  process.stdout.write(`results: ${path.relative(process.cwd(), file)}  (total ${out.durationS.toFixed(0)} s)\n`);
  if (opts.cpuProf) process.stdout.write(`cpu profiles: ${path.relative(process.cwd(), profDir)} (summarise with node bench/lib/profile-summary.js FILE)\n`);
  if (opts.keepTmp) process.stdout.write(`temp dir kept: ${dir}\n`);
  const failed = summaries.some((s) => s.rows.length === 0);
  process.exitCode = failed ? 1 : 0;
}

function safe(f) { try { return f(); } catch { return null; } }

/** Which code was measured: commit, whether src/ had local changes, when dist/ was built. */
function codeInfo() {
  const git = (args) => safe(() => execSync(`git ${args}`, { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim());
  const st = safe(() => fs.statSync(path.join(ROOT, 'dist', 'cli', 'main.js')));
  const dirty = git('status --porcelain -- src');
  return { commit: git('rev-parse HEAD'), srcLocalChanges: dirty === null ? null : dirty.split('\n').filter(Boolean).length, distBuiltAt: st ? st.mtime.toISOString() : null };
}

main().catch(async (err) => {
  if (err && err.usage) { process.stderr.write(`bench: ${err.message}\n`); process.exit(2); }
  process.emit('bench-failed');
  process.stderr.write(`bench: ${err && err.stack ? err.stack : err}\n(logs of every process are kept in the temp dir named above)\n`);
  await procs.stopAll().catch(() => {});
  process.exit(2);
});

'use strict';
/**
 * The six scenarios of the benchmark. Each gets a context:
 *   ctx.sizes      sizes for this run (--quick or full)
 *   ctx.variants() the main variants, started on first use: direct, plain-node, openssh-N,
 *                  openssh-tt, ours (plain-node: bench/lib/plain-node.js)
 *   ctx.target     { host, port } of the target server
 *   ctx.sshd       the private sshd (or null with --skip-openssh)
 *   ctx.dir        temp dir for logs, keys, data
 *   ctx.log(...)   progress on stderr
 * and records rows into a Results table (see report.js). Every measurement is a
 * fresh worker process with a count AND a deadline; a scenario also stops
 * starting new measurements when its budget is spent (rows then say partial).
 */
const path = require('node:path');
const fs = require('node:fs');
const { startJob, runJob } = require('./jobs');
const procs = require('./procs');
const ossh = require('./openssh');
const ours = require('./ours');
const { sleep, rssKiB, pssKiB, cpuMs, processTree, nowMs, median, freePort } = require('./util');

const GiB = 1024 ** 3;
const CONNECT_CONCURRENCY = 8; // devices connecting at once in the memory scenario (both variants)
const MiB = 1024 ** 2;

/** Variants in a rotated order (so no variant always runs first or last). */
function rotated(list, k) {
  const n = list.length;
  return list.map((_, i) => list[(i + k) % n]);
}

/**
 * The repeat loop the scenarios share: for each repeat, `fn` on each of
 * `items(rep)` (usually the variants, rotated by the repeat) until the budget is
 * spent; an error is recorded under `label(item)` and the loop goes on.
 * Resolves false when the budget ran out.
 */
async function eachRun({ reps, items, budget, res, label }, fn) {
  for (let rep = 0; rep < reps; rep++) {
    for (const item of items(rep)) {
      if (!budget.ok()) { res.partial('budget exhausted'); return false; }
      try {
        await fn(item, rep);
      } catch (err) {
        res.error(`${label(item)}: ${err.message}`);
      }
    }
  }
  return true;
}

function sum(pids, f) {
  let s = 0;
  for (const p of pids) { const v = f(p); if (Number.isFinite(v)) s += v; }
  return s;
}

/** Run fn while sampling the tunnel processes: CPU ms used and peak RSS (KiB, summed). */
async function measured(v, fn) {
  const pids = v.pids ? v.pids() : [];
  const cpu0 = sum(pids, cpuMs);
  const rss0 = sum(pids, rssKiB);
  let peak = rss0;
  const timer = setInterval(() => { peak = Math.max(peak, sum(pids, rssKiB)); }, 200);
  try {
    const r = await fn();
    return { r, cpuMs: sum(pids, cpuMs) - cpu0, rssPeakKiB: peak, rss0KiB: rss0 };
  } finally {
    clearInterval(timer);
  }
}

class Budget {
  constructor(seconds) { this.until = Date.now() + seconds * 1000; this.exhausted = false; }
  left() { return Math.max(0, this.until - Date.now()); }
  ok() { if (this.left() <= 0) this.exhausted = true; return !this.exhausted; }
  /** Deadline for one job: at most capMs, never past the budget (but at least 5 s). */
  jobMs(capMs) { return Math.max(5000, Math.min(capMs, this.left())); }
}

// ---------------------------------------------------------------------------

async function bulk(ctx, res) {
  const { sizes } = ctx;
  const variants = await ctx.variants();
  const budget = new Budget(sizes.budgetS.bulk);
  const one = sizes.bulkBytes;
  const per8 = Math.floor(sizes.bulkBytes / 8);
  const kinds = [
    { key: 'download 1 stream', job: 'bulkDownload', streams: 1, bytes: one },
    { key: 'download 8 streams', job: 'bulkDownload', streams: 8, bytes: per8 },
    { key: 'upload 1 stream', job: 'bulkUpload', streams: 1, bytes: one },
    { key: 'upload 8 streams', job: 'bulkUpload', streams: 8, bytes: per8 },
  ];
  res.note(`download/upload: 1 stream x ${fmtBytes(one)}, 8 streams x ${fmtBytes(per8)} each (${fmtBytes(per8 * 8)} total); setup excluded from the timing`);
  await eachRun({
    reps: sizes.repeats.bulk, budget, res,
    items: (rep) => kinds.flatMap((kind) => rotated(variants, rep).map((v) => ({ kind, v }))),
    label: ({ kind, v }) => `${kind.key} via ${v.name}`,
  }, async ({ kind, v }, rep) => {
    ctx.log(`bulk: ${kind.key} via ${v.name} (run ${rep + 1}/${sizes.repeats.bulk})`);
    const m = await measured(v, () => runJob(kind.job, { socks: v.socks, target: ctx.target, streams: kind.streams, bytes: kind.bytes, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 }));
    if (m.r.partial) res.partial(`${kind.key} via ${v.name}: did not finish in time (${fmtBytes(m.r.bytes)} moved)`);
    res.add(`${kind.key}`, 'MiB/s', 'higher', v.name, m.r.MiBps);
    if (v.name !== 'direct') {
      res.add(`${kind.key}: tunnel CPU`, 'ms/GiB', 'lower', v.name, m.cpuMs / (m.r.bytes / GiB));
      res.add(`${kind.key}: tunnel RSS growth`, 'MiB', 'lower', v.name, (m.rssPeakKiB - m.rss0KiB) / 1024);
    }
    res.raw({ kind: kind.key, variant: v.name, rep, ...m.r, tunnelCpuMs: m.cpuMs, tunnelRssPeakKiB: m.rssPeakKiB });
  });
}

/** Upper bound on the connection warm-up per variant (ssh -N needs ~44 ms per connection). */
const WARMUP_CAP_MS = 15_000;

async function connections(ctx, res) {
  const { sizes } = ctx;
  const variants = await ctx.variants();
  const budget = new Budget(sizes.budgetS.connections);
  res.note(`${sizes.connCount} sequential new connections, each: TCP connect, SOCKS greeting, CONNECT, ${32}-byte request echoed, close; ` +
    `measured after ${sizes.connWarmup} untimed warm-up connections per variant (at most ${WARMUP_CAP_MS / 1000} s; the warm-up rate is its own row)`);
  // Our three processes are JavaScript: their per-connection code is only optimised by
  // V8 after some thousands of connections (measured: ~380/s for the first 1000, ~750/s
  // from the fourth 1000 on). Warm every variant the same way, and show the cold rate.
  for (const v of variants) {
    if (!budget.ok()) break;
    ctx.log(`connections: up to ${sizes.connWarmup} warm-up connections via ${v.name}`);
    try {
      const r = await runJob('connSetup', { socks: v.socks, target: ctx.target, count: sizes.connWarmup, deadlineMs: Math.min(WARMUP_CAP_MS, budget.jobMs(sizes.jobCapMs)) }, { hardTimeoutMs: WARMUP_CAP_MS + 60_000 });
      res.add('connections/s, warm-up (cold processes)', 'conn/s', 'higher', v.name, r.connPerSec);
    } catch (err) {
      res.error(`${v.name} warm-up: ${err.message}`);
    }
  }
  await eachRun({ reps: sizes.repeats.connections, items: (rep) => rotated(variants, rep), budget, res, label: (v) => v.name }, async (v, rep) => {
    ctx.log(`connections: ${sizes.connCount} sequential via ${v.name} (run ${rep + 1}/${sizes.repeats.connections})`);
    const m = await measured(v, () => runJob('connSetup', { socks: v.socks, target: ctx.target, count: sizes.connCount, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 }));
    const r = m.r;
    if (r.partial) res.partial(`${v.name}: ${r.n}/${sizes.connCount} connections before the deadline`);
    if (r.errors) res.error(`${v.name}: ${r.errors} failed connections (first: ${r.firstError})`);
    res.add('new connection + request p50', 'ms', 'lower', v.name, r.p50);
    res.add('new connection + request p99', 'ms', 'lower', v.name, r.p99);
    res.add('connections/s (sequential)', 'conn/s', 'higher', v.name, r.connPerSec);
    if (v.name !== 'direct') res.add('tunnel CPU per connection', 'ms', 'lower', v.name, m.cpuMs / Math.max(1, r.n));
    res.raw({ variant: v.name, rep, ...r, tunnelCpuMs: m.cpuMs });
  });
}

async function concurrency(ctx, res) {
  const { sizes } = ctx;
  const variants = await ctx.variants();
  const budget = new Budget(sizes.budgetS.concurrency);
  res.note(`${sizes.concConns} concurrent connections x ${sizes.concReqs} sequential tiny requests each; then ${sizes.idleStreams} idle streams held open (opened ${64} at a time), then one request on every one of them at once`);
  const finished = await eachRun({ reps: sizes.repeats.concurrency, items: (rep) => rotated(variants, rep), budget, res, label: (v) => v.name }, async (v, rep) => {
    ctx.log(`concurrency: ${sizes.concConns}x${sizes.concReqs} via ${v.name} (run ${rep + 1}/${sizes.repeats.concurrency})`);
    const m = await measured(v, () => runJob('concurrency', { socks: v.socks, target: ctx.target, conns: sizes.concConns, reqs: sizes.concReqs, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 }));
    const r = m.r;
    if (r.partial) res.partial(`${v.name}: ${r.requests}/${sizes.concConns * sizes.concReqs} requests`);
    if (r.errors) res.error(`${v.name}: ${r.errors} connections failed (first: ${r.firstError})`);
    res.add(`${sizes.concConns}x${sizes.concReqs}: wall time`, 'ms', 'lower', v.name, r.ms);
    res.add(`${sizes.concConns}x${sizes.concReqs}: requests/s`, 'req/s', 'higher', v.name, r.reqPerSec);
    res.add(`${sizes.concConns}x${sizes.concReqs}: request p50`, 'ms', 'lower', v.name, r.request.p50);
    res.add(`${sizes.concConns}x${sizes.concReqs}: request p99`, 'ms', 'lower', v.name, r.request.p99);
    res.add(`${sizes.concConns}x${sizes.concReqs}: open p99`, 'ms', 'lower', v.name, r.open.p99);
    res.raw({ part: 'concurrent', variant: v.name, rep, ...r, tunnelCpuMs: m.cpuMs });
  });
  if (!finished) return;
  // Idle streams (once per variant: heavy).
  for (const v of variants) {
    if (!budget.ok()) { res.partial('budget exhausted'); return; }
    ctx.log(`concurrency: ${sizes.idleStreams} idle streams via ${v.name}`);
    try {
      await sleep(500);
      const pids = v.pids ? v.pids() : [];
      const before = sum(pids, rssKiB);
      let during = NaN;
      const r = await runJob('idleStreams', { socks: v.socks, target: ctx.target, count: sizes.idleStreams, deadlineMs: budget.jobMs(sizes.jobCapMs) }, {
        hardTimeoutMs: sizes.jobCapMs + 120_000,
        onHold: async () => {
          await sleep(1000);
          during = sum(v.pids ? v.pids() : [], rssKiB);
        },
      });
      if (r.partial) res.partial(`${v.name}: ${r.open}/${sizes.idleStreams} idle streams opened before the deadline`);
      if (r.errors) res.error(`${v.name}: ${r.errors} idle streams failed (first: ${r.firstError})`);
      res.add(`${sizes.idleStreams} idle streams: opened`, 'streams', 'higher', v.name, r.open);
      res.add(`${sizes.idleStreams} idle streams: time to open all`, 'ms', 'lower', v.name, r.openMs);
      res.add(`${sizes.idleStreams} idle streams: still alive`, 'streams', 'higher', v.name, r.alive);
      res.add(`${sizes.idleStreams} idle streams: one request on all at once`, 'ms', 'lower', v.name, r.pingAllMs);
      if (v.name !== 'direct') res.add(`${sizes.idleStreams} idle streams: tunnel RSS per stream`, 'KiB', 'lower', v.name, (during - before) / Math.max(1, r.open));
      res.raw({ part: 'idle', variant: v.name, ...r, tunnelRssBeforeKiB: before, tunnelRssDuringKiB: during });
    } catch (err) {
      res.error(`${v.name}: ${err.message}`);
    }
  }
}

async function fairness(ctx, res) {
  const { sizes } = ctx;
  const variants = await ctx.variants();
  const budget = new Budget(sizes.budgetS.fairness);
  res.note(`helper B: ${sizes.fairPersistent} tiny requests on one connection, then ${sizes.fairFresh} tiny requests on new connections; alone ("idle"), then while helper A downloads without pause through the same device ("loaded"), then while A uploads (A's rate: what the target acknowledged)`);
  await eachRun({ reps: sizes.repeats.fairness, items: (rep) => rotated(variants, rep), budget, res, label: (v) => v.name }, async (v, rep) => {
    const socksB = v.name === 'direct' ? null : v.socksB;
    const bParams = { socks: socksB, target: ctx.target, persistent: sizes.fairPersistent, fresh: sizes.fairFresh };
    ctx.log(`fairness: helper B alone via ${v.name} (run ${rep + 1}/${sizes.repeats.fairness})`);
    const idle = await runJob('tinyLatency', { ...bParams, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 });
    if (idle.partial) res.partial(`${v.name}: helper B did not finish its requests in time`);
    res.add('B same-connection p50, idle', 'ms', 'lower', v.name, idle.persistent.p50);
    res.add('B same-connection p99, idle', 'ms', 'lower', v.name, idle.persistent.p99);
    res.add('B new-connection p50, idle', 'ms', 'lower', v.name, idle.fresh.p50);
    res.add('B new-connection p99, idle', 'ms', 'lower', v.name, idle.fresh.p99);
    const raw = { variant: v.name, rep, idle };
    for (const upload of [false, true]) {
      const doing = upload ? 'uploading' : 'downloading';
      ctx.log(`fairness: helper B while helper A is ${doing} via ${v.name}`);
      const a = startJob('bulkUntilStopped', { socks: v.socks, target: ctx.target, upload }, { hardTimeoutMs: sizes.jobCapMs * 2 + 120_000 });
      await Promise.race([a.held, a.done]);
      await sleep(1000); // let the transfer reach steady state
      let loaded;
      try {
        loaded = await runJob('tinyLatency', { ...bParams, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 });
      } finally {
        a.release();
      }
      const ar = await a.done;
      if (loaded.partial) res.partial(`${v.name}: helper B did not finish its requests in time (A ${doing})`);
      if (loaded.errors) res.error(`${v.name}: helper B had ${loaded.errors} errors under load (first: ${loaded.firstError})`);
      res.add(`B same-connection p50, A ${doing}`, 'ms', 'lower', v.name, loaded.persistent.p50);
      res.add(`B same-connection p99, A ${doing}`, 'ms', 'lower', v.name, loaded.persistent.p99);
      res.add(`B new-connection p50, A ${doing}`, 'ms', 'lower', v.name, loaded.fresh.p50);
      res.add(`B new-connection p99, A ${doing}`, 'ms', 'lower', v.name, loaded.fresh.p99);
      res.add(`A ${upload ? 'upload' : 'download'} while B runs`, 'MiB/s', 'higher', v.name, ar.MiBps);
      raw[upload ? 'upload' : 'download'] = { loaded, a: ar };
    }
    res.raw(raw);
  });
}

/** Ask the memory broker (preloaded with mem-probe.js) for a post-GC memoryUsage(). */
async function brokerHeap(pid, file) {
  let before = 0;
  try { before = JSON.parse(fs.readFileSync(file, 'utf8')).t; } catch { /* none yet */ }
  try { process.kill(pid, 'SIGUSR2'); } catch { return null; }
  for (let i = 0; i < 100; i++) {
    await sleep(50);
    try {
      const m = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (m.t !== before) return m;
    } catch { /* not yet */ }
  }
  return null;
}

async function settledRss(pids, ms = 1500) {
  await sleep(ms);
  const s = [];
  for (let i = 0; i < 5; i++) { s.push(sum(pids, rssKiB)); await sleep(100); }
  return median(s);
}

async function memory(ctx, res) {
  const { sizes, dir } = ctx;
  const budget = new Budget(sizes.budgetS.memory);
  const memDir = path.join(dir, 'memory');
  fs.mkdirSync(memDir, { recursive: true });
  const memFile = path.join(memDir, 'broker-mem.json');
  res.note(`idle sessions: ${sizes.memSessions} devices connected to one fresh broker (Agent instances from dist/ in one process, each its own SSH connection); server memory delta / sessions. OpenSSH: ${sizes.osshSessions} 'ssh -N -R' devices, delta of the whole sshd process tree (RSS and PSS)`);
  res.note(`active streams: ${sizes.memStreams} streams opened through one helper and held open (each answered one request); delta / streams`);

  // --- ours: idle sessions --------------------------------------------------
  const broker = await ours.startBroker(memDir, { name: 'broker-mem', nodeArgs: ['--expose-gc', '-r', path.join(__dirname, 'mem-probe.js')], env: { BENCH_MEM_FILE: memFile } });
  const bpid = broker.child.pid;
  // Always: full GC first (heap numbers), then RSS/PSS, so before and after are taken the same way.
  const baseHeap = await brokerHeap(bpid, memFile);
  const base = await settledRss([bpid]);
  const basePss = pssKiB(bpid);
  ctx.log(`memory: connecting ${sizes.memSessions} devices to a fresh broker (RSS now ${(base / 1024).toFixed(1)} MiB)`);
  const swarm = procs.startNode(path.join(__dirname, 'agent-swarm.js'), [], { name: 'agent-swarm', logFile: path.join(memDir, 'swarm.log') });
  const ready = await new Promise((resolve, reject) => {
    swarm.on('message', (m) => { if (m.type === 'ready') resolve(m); });
    swarm.once('exit', (c) => reject(new Error(`agent swarm exited (${c})`)));
    swarm.send({ type: 'start', broker: broker.address, fingerprint: broker.fingerprint, knownBrokersFile: path.join(memDir, 'known_brokers'), count: sizes.memSessions, concurrency: CONNECT_CONCURRENCY, deadlineMs: budget.jobMs(sizes.jobCapMs * 2) });
  });
  if (ready.failed) res.error(`ours: ${ready.failed} devices failed to connect (first: ${ready.firstError})`);
  if (ready.partial) res.partial(`ours: only ${ready.ok}/${sizes.memSessions} devices connected before the deadline`);
  await sleep(2000);
  const afterHeap = await brokerHeap(bpid, memFile);
  const after = await settledRss([bpid]);
  const afterPss = pssKiB(bpid);
  const perSession = (after - base) / Math.max(1, ready.ok);
  res.note(`ours: ${ready.ok}/${sizes.memSessions} devices connected in ${ready.ms} ms (${CONNECT_CONCURRENCY} at a time)`);
  res.add('idle session: server RSS per session', 'KiB', 'lower', 'ours', perSession);
  res.add('idle session: server PSS per session', 'KiB', 'lower', 'ours', (afterPss - basePss) / Math.max(1, ready.ok));
  if (baseHeap && afterHeap) {
    res.add('idle session: broker JS heap per session (after GC)', 'KiB', 'lower', 'ours', (afterHeap.heapUsed - baseHeap.heapUsed) / 1024 / Math.max(1, ready.ok));
    res.add('idle session: broker external+buffers per session', 'KiB', 'lower', 'ours', ((afterHeap.external + afterHeap.arrayBuffers) - (baseHeap.external + baseHeap.arrayBuffers)) / 1024 / Math.max(1, ready.ok));
  }
  res.raw({ part: 'idle-sessions', variant: 'ours', sessions: ready.ok, baseKiB: base, afterKiB: after, basePssKiB: basePss, afterPssKiB: afterPss, baseHeap, afterHeap, connectMs: ready.ms });
  ctx.log(`memory: ${ready.ok} sessions: broker RSS ${(base / 1024).toFixed(1)} -> ${(after / 1024).toFixed(1)} MiB (${perSession.toFixed(1)} KiB/session)`);

  // --- ours: active streams (fresh device + helper on the same broker) -------
  let chain;
  try {
    chain = await ours.startChain(memDir, ctx.target, { broker, helpers: 1, tag: '-mem' });
    await streamMemory(ctx, res, budget, 'ours', chain, { server: () => [bpid], agent: () => [chain.roles().agent], helper: () => [chain.roles().helper] }, async () => {
      const h = await brokerHeap(bpid, memFile);
      return h;
    });
  } catch (err) {
    res.error(`ours streams: ${err.message}`);
  } finally {
    swarm.send({ type: 'close' });
    await sleep(300);
    await procs.stop(swarm);
    if (chain) await chain.close();
    await procs.stop(broker.child);
  }

  // --- OpenSSH: idle sessions and streams -------------------------------------
  if (!ctx.sshd) return;
  const sshd = ctx.sshd;
  const n = sizes.osshSessions;
  const treeBefore = processTree(sshd.child.pid);
  const rssB = await settledRss(treeBefore, 500);
  const pssB = sum(treeBefore, pssKiB);
  ctx.log(`memory: connecting ${n} 'ssh -N -R' devices to sshd`);
  const devices = [];
  const t0 = Date.now();
  let failed = 0;
  let next = 0;
  await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, async () => {
    while (next < n && budget.ok()) {
      next++;
      try { devices.push(await ossh.startDevice(sshd, { variant: 'N', name: 'ssh-R(mem)' })); } catch { failed++; }
    }
  }));
  const connectMs = Date.now() - t0;
  try {
    if (failed) res.error(`openssh: ${failed} devices failed to connect`);
    const treeAfter = processTree(sshd.child.pid);
    const rssA = await settledRss(treeAfter, 2000);
    const pssA = sum(treeAfter, pssKiB);
    const ok = devices.length;
    res.add('idle session: server RSS per session', 'KiB', 'lower', 'openssh-N', (rssA - rssB) / Math.max(1, ok));
    res.add('idle session: server PSS per session', 'KiB', 'lower', 'openssh-N', (pssA - pssB) / Math.max(1, ok));
    res.note(`openssh: ${ok}/${n} devices connected in ${connectMs} ms (${CONNECT_CONCURRENCY} at a time), ${treeAfter.length} sshd processes`);
    res.raw({ part: 'idle-sessions', variant: 'openssh-N', sessions: ok, rssBeforeKiB: rssB, rssAfterKiB: rssA, pssBeforeKiB: pssB, pssAfterKiB: pssA, sshdProcesses: treeAfter.length, connectMs });
  } finally {
    await Promise.all(devices.map((d) => procs.stop(d.child)));
  }
  // streams through a fresh openssh-N chain (long-lived ssh/sshd processes keep freed
  // malloc memory from earlier scenarios, which would hide the growth)
  let v;
  try {
    v = await ossh.startChain(sshd, ctx.target, { variant: 'N', helpers: 1 });
    const mine = new Set(processTree(sshd.child.pid));
    await streamMemory(ctx, res, budget, 'openssh-N', v, {
      server: () => processTree(sshd.child.pid).filter((p) => mine.has(p)), agent: () => [v.devicePid()], helper: () => [v.helperPid()],
    });
  } catch (err) {
    res.error(`openssh streams: ${err.message}`);
  } finally {
    if (v) await v.close();
  }
}

/** Open K streams through `chain` and hold them; record per-stream memory of server / device / helper side. */
async function streamMemory(ctx, res, budget, name, chain, roles, heapFn) {
  const { sizes } = ctx;
  if (!budget.ok()) { res.partial('budget exhausted'); return; }
  ctx.log(`memory: ${sizes.memStreams} open streams via ${name}`);
  await sleep(500);
  const heap0 = heapFn ? await heapFn() : null;
  const b = { server: await settledRss(roles.server(), 500), agent: sum(roles.agent(), rssKiB), helper: sum(roles.helper(), rssKiB) };
  let d;
  let heap1 = null;
  const r = await runJob('idleStreams', { socks: chain.socks, target: ctx.target, count: sizes.memStreams, deadlineMs: budget.jobMs(sizes.jobCapMs) }, {
    hardTimeoutMs: sizes.jobCapMs + 120_000,
    onHold: async () => {
      heap1 = heapFn ? await heapFn() : null;
      d = { server: await settledRss(roles.server(), 1000), agent: sum(roles.agent(), rssKiB), helper: sum(roles.helper(), rssKiB) };
    },
  });
  const k = Math.max(1, r.open);
  if (r.partial) res.partial(`${name}: ${r.open}/${sizes.memStreams} streams opened`);
  if (r.errors) res.error(`${name}: ${r.errors} streams failed (first: ${r.firstError})`);
  res.add('active stream: server RSS per stream', 'KiB', 'lower', name, (d.server - b.server) / k);
  res.add('active stream: device-side RSS per stream', 'KiB', 'lower', name, (d.agent - b.agent) / k);
  res.add('active stream: helper-side RSS per stream', 'KiB', 'lower', name, (d.helper - b.helper) / k);
  if (heap0 && heap1) res.add('active stream: broker JS heap per stream (after GC)', 'KiB', 'lower', name, (heap1.heapUsed - heap0.heapUsed) / 1024 / k);
  res.raw({ part: 'streams', variant: name, streams: r.open, before: b, during: d, heap0, heap1 });
}

async function wan(ctx, res) {
  const { sizes, dir } = ctx;
  const delay = sizes.wanDelayMs;
  const rtt = delay * 4; // two legs, each way
  res.note(`${delay} ms each way on the helper-broker leg and on the broker-device leg (user-space delay relays), ${rtt} ms end-to-end round trip; ${sizes.wanConns} sequential new connections, curl-like SOCKS (greeting, wait, CONNECT, wait, request); "RTT" columns = ms / ${rtt}; ` +
    `then a ${sizes.wanDownloadMiB} MiB download alone, one beside a connection that has been idle for ${WAN_SETTLE_MS / 1000} s, two of half the size at once, and an upload; ` +
    `then ${sizes.wanBurst} new connections at once, twice 0.5 s apart (a web page; named opens need nothing pre-opened; with BROKER_NAMED_OPENS=0 our device pools grow after the first burst and shrink after ${WAN_POOL_DECAY_MS / 1000} s quiet here, 30 s by default); ` +
    `"ours-fast-open" is ours with \`join --fast-open\` (SOCKS success at once for targets the descriptor allows outright; a device-side failure then resets the connection), its own column and ratio (connection setup only: its download clock would start a round trip before the stream is open)`);
  const wanDir = path.join(dir, 'wan');
  fs.mkdirSync(wanDir, { recursive: true });
  const targets = [];
  let broker;
  if (ctx.sshd) targets.push(ctx.sshd.port, ctx.sshd.port);
  // Our pools shrink back after a burst sooner than by default, so each run's first burst finds them small again.
  const poolEnv = { BROKER_POOL_DECAY_MS: String(WAN_POOL_DECAY_MS) };
  broker = await ours.startBroker(wanDir, { name: 'broker-wan', env: poolEnv });
  targets.push(broker.port, broker.port);
  const relay = procs.startNode(path.join(__dirname, 'delay-relay.js'), [String(delay), targets.join(',')], { name: 'delay-relay', logFile: path.join(wanDir, 'relay.log') });
  const ports = await new Promise((resolve, reject) => {
    relay.once('message', (m) => resolve(m.ports));
    relay.once('exit', (c) => reject(new Error(`delay relay exited (${c})`)));
  });
  const chains = [];
  const budget = new Budget(sizes.budgetS.wan);
  try {
    if (ctx.sshd) {
      for (const variant of ['N', 'tt']) {
        ctx.log(`wan: starting OpenSSH (${variant}) chain through the delay relays`);
        try {
          chains.push(await ossh.startChain(ctx.sshd, ctx.target, { variant, helpers: 1, helperPort: ports[0], devicePort: ports[1] }));
        } catch (err) {
          res.error(`openssh-${variant}: ${err.message}`);
        }
      }
    }
    const ob = ctx.sshd ? 2 : 0;
    ctx.log('wan: starting our chain through the delay relays');
    chains.push(await ours.startChain(wanDir, ctx.target, { broker, helpers: 1, helperAddress: `127.0.0.1:${ports[ob]}`, deviceAddress: `127.0.0.1:${ports[ob + 1]}`, tag: '-wan', env: poolEnv }));
    // The same with `join --fast-open`: SOCKS success at once where the descriptor allows the target.
    ctx.log('wan: starting our chain with join --fast-open through the delay relays');
    chains.push(await ours.startChain(wanDir, ctx.target, {
      broker, helpers: 1, helperAddress: `127.0.0.1:${ports[ob]}`, deviceAddress: `127.0.0.1:${ports[ob + 1]}`, tag: '-wan-fast', env: poolEnv,
      joinArgs: ['--fast-open'], name: 'ours-fast-open',
    }));
    await eachRun({ reps: sizes.repeats.wan, items: (rep) => rotated(chains, rep), budget, res, label: (v) => v.name }, async (v, rep) => {
      ctx.log(`wan: ${sizes.wanConns} new connections via ${v.name} (run ${rep + 1}/${sizes.repeats.wan})`);
      const r = await runJob('wanTimings', { socks: v.socks, target: ctx.target, count: sizes.wanConns, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 });
      if (r.errors) res.error(`${v.name}: ${r.errors} connections failed (first: ${r.firstError})`);
      if (r.partial) res.partial(`${v.name}: ${r.firstByte.n}/${sizes.wanConns} connections`);
      for (const [k, label] of [['greeting', 'SOCKS greeting reply'], ['success', 'SOCKS success reply'], ['firstByte', 'first response byte']]) {
        res.add(`${label} p50`, 'ms', 'lower', v.name, r[k].p50);
        res.add(`${label} p50 in round trips`, 'RTT', 'lower', v.name, r[k].p50 / rtt);
        res.add(`${label} p90`, 'ms', 'lower', v.name, r[k].p90);
      }
      res.raw({ variant: v.name, rep, ...r });
      // Bulk over the same links: alone, and beside a quiet keep-alive connection (the
      // stream window cap must not hold for a connection that carries nothing). Not for
      // fast open: the data path is ours, and its clock would start at the early SOCKS
      // success, one round trip before the stream is open (32 MiB at 130 MiB/s: -15 %).
      const d = v.name === 'ours-fast-open' ? undefined : await runJob('downloadBesideIdle', { socks: v.socks, target: ctx.target, bytes: sizes.wanDownloadMiB * MiB, settleMs: WAN_SETTLE_MS, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 });
      if (d) {
        if (d.partial) res.partial(`${v.name}: a ${sizes.wanDownloadMiB} MiB download did not finish`);
        res.add(`download ${sizes.wanDownloadMiB} MiB alone`, 'MiB/s', 'higher', v.name, d.aloneMiBps);
        res.add(`download ${sizes.wanDownloadMiB} MiB beside an idle connection`, 'MiB/s', 'higher', v.name, d.besideMiBps);
        res.add(`two downloads of ${sizes.wanDownloadMiB / 2} MiB at once, together`, 'MiB/s', 'higher', v.name, d.twoMiBps);
        res.add(`upload ${sizes.wanDownloadMiB} MiB`, 'MiB/s', 'higher', v.name, d.uploadMiBps);
        res.raw({ variant: v.name, rep, download: d });
      }
      const b = await runJob('wanBurst', { socks: v.socks, target: ctx.target, conns: sizes.wanBurst, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 });
      if (b.errors) res.error(`${v.name}: ${b.errors} burst connections failed (first: ${b.firstError})`);
      if (b.partial) res.partial(`${v.name}: a burst of ${sizes.wanBurst} did not complete`);
      for (const [k, label] of [['first', 'first burst'], ['second', 'second burst']]) {
        res.add(`${sizes.wanBurst} at once, ${label}: last SOCKS success`, 'ms', 'lower', v.name, b[k]?.all);
        res.add(`${sizes.wanBurst} at once, ${label}: last success in round trips`, 'RTT', 'lower', v.name, b[k]?.all === undefined ? undefined : b[k].all / rtt);
      }
      res.raw({ variant: v.name, rep, burst: b });
      // Let our grown pools shrink back (32 -> 4 is three halvings) before the next run's first burst.
      if (v.name.startsWith('ours')) await sleep(WAN_POOL_DECAY_MS * 4);
    });
  } finally {
    for (const c of chains) await c.close();
    await procs.stop(relay);
    await procs.stop(broker.child);
  }
}

/**
 * Fairness over a slow link: every relayed connection is a link of `slowRateMbit`
 * each way with `slowDelayMs` one way per leg (a device on a 10 Mbit/s uplink).
 * What one download keeps in flight beyond the link's bandwidth-delay product
 * waits in the link's queue, and every other stream's reply waits behind it.
 * Then the same with only the helpers' leg slow and B's requests through A's helper
 * (one browser on a slow connection, downloading and clicking). Then uploads, where
 * the queue forms in front of the slow link on the way in: a device's slow downlink
 * (helpers' legs only delayed), and one helper's slow uplink.
 */
async function slowlink(ctx, res) {
  const { sizes } = ctx;
  const rate = (sizes.slowRateMbit * 1e6) / 8;
  res.note(`${sizes.slowRateMbit} Mbit/s (${(rate / MiB).toFixed(2)} MiB/s) each way per relayed connection, ${sizes.slowDelayMs} ms each way on the helper-broker and broker-device legs (user-space relays; what waits for a link queues in the relay, then in the sender's TCP buffers); ` +
    `helper A downloads without pause; after ${sizes.slowSettleMs / 1000} s helper B makes ${sizes.slowPersistent} tiny requests on one connection, then ${sizes.slowFresh} new connections with one request each (time to the response, SOCKS included). ` +
    `First every leg is slow; then ("one helper on a slow link") only the helpers' leg is, and B's requests go through A's helper. ` +
    `Then A uploads instead: with only the device's leg slow ("slow device downlink"), and with one helper's leg slow, B through A's helper ("one helper's slow uplink"); ` +
    `then the slow device downlink again with our broker and helpers but a stock \`ssh -R 0 expose@broker\` as the device (ours only: OpenSSH's chain is the one of the slow device downlink rows); ` +
    `A's rate is what the target acknowledged, and a stopped upload is waited for until it has all arrived`);
  const budget = new Budget(sizes.budgetS.slowlink);
  await slowlinkPart(ctx, res, budget, { tag: 'slow', rates: [rate, rate], sameHelper: false, prefix: '' });
  await slowlinkPart(ctx, res, budget, { tag: 'slowhelper', rates: [rate, 0], sameHelper: true, prefix: 'one helper on a slow link: ' });
  await slowlinkPart(ctx, res, budget, { tag: 'slowdevup', rates: [0, rate], sameHelper: false, upload: true, prefix: 'slow device downlink: ' });
  await slowlinkPart(ctx, res, budget, { tag: 'slowhelperup', rates: [rate, 0], sameHelper: true, upload: true, prefix: 'one helper\'s slow uplink: ' });
  // The same link with a zero-install device: OpenSSH's chain there is the one measured just above.
  await slowlinkPart(ctx, res, budget, { tag: 'slowdevupstock', rates: [0, rate], sameHelper: false, upload: true, stockDevice: true, prefix: 'stock ssh -R device, slow device downlink: ' });
}

/**
 * One slowlink setting: `rates` = [helpers' leg, device's leg] in bytes/s (0: delay only); A
 * downloads, or uploads. With `stockDevice` our chain's device is a stock `ssh -R`, and no
 * OpenSSH chain runs (the same setting without it measured that one).
 */
async function slowlinkPart(ctx, res, budget, { tag, rates, sameHelper, upload = false, stockDevice = false, prefix }) {
  const doing = upload ? 'uploading' : 'downloading';
  const { sizes, dir } = ctx;
  const slowDir = path.join(dir, tag);
  fs.mkdirSync(slowDir, { recursive: true });
  const targets = [];
  const legRates = [];
  const sshd = stockDevice ? undefined : ctx.sshd;
  if (sshd) targets.push(sshd.port, sshd.port), legRates.push(...rates);
  const broker = await ours.startBroker(slowDir, { name: `broker-${tag}` });
  targets.push(broker.port, broker.port);
  legRates.push(...rates);
  const relay = procs.startNode(path.join(__dirname, 'delay-relay.js'), [String(sizes.slowDelayMs), targets.join(','), legRates.join(',')], { name: `link-relay-${tag}`, logFile: path.join(slowDir, 'relay.log') });
  const ports = await new Promise((resolve, reject) => {
    relay.once('message', (m) => resolve(m.ports));
    relay.once('exit', (c) => reject(new Error(`link relay exited (${c})`)));
  });
  const helpers = sameHelper ? 1 : 2;
  const chains = [];
  try {
    if (sshd) {
      for (const variant of ['N', 'tt']) {
        ctx.log(`slowlink: starting OpenSSH (${variant}) chain through the link relays (${tag})`);
        try {
          chains.push(await ossh.startChain(sshd, ctx.target, { variant, helpers, helperPort: ports[0], devicePort: ports[1] }));
        } catch (err) {
          res.error(`openssh-${variant}: ${err.message}`);
        }
      }
    }
    const ob = sshd ? 2 : 0;
    ctx.log(`slowlink: starting our chain through the link relays (${tag})`);
    chains.push(await ours.startChain(slowDir, ctx.target, { broker, helpers, helperAddress: `127.0.0.1:${ports[ob]}`, deviceAddress: `127.0.0.1:${ports[ob + 1]}`, tag: `-${tag}`, stockDevice }));
    await eachRun({ reps: sizes.repeats.slowlink, items: (rep) => rotated(chains, rep), budget, res, label: (v) => v.name }, async (v, rep) => {
      ctx.log(`slowlink: ${prefix || 'every leg slow: '}helper B while helper A is ${doing} via ${v.name} (run ${rep + 1}/${sizes.repeats.slowlink})`);
      const a = startJob('bulkUntilStopped', { socks: v.socks, target: ctx.target, upload }, { hardTimeoutMs: sizes.jobCapMs * 2 + 120_000 });
      await Promise.race([a.held, a.done]);
      await sleep(sizes.slowSettleMs);
      let b;
      try {
        b = await runJob('tinyLatency', { socks: sameHelper ? v.socks : v.socksB, target: ctx.target, persistent: sizes.slowPersistent, fresh: sizes.slowFresh, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 });
      } finally {
        a.release();
      }
      const ar = await a.done;
      if (b.partial) res.partial(`${prefix}${v.name}: helper B made ${b.persistent.n}/${sizes.slowPersistent} requests and ${b.fresh.n}/${sizes.slowFresh} connections in time`);
      if (b.errors) res.error(`${prefix}${v.name}: helper B had ${b.errors} errors (first: ${b.firstError})`);
      if (upload && !ar.drained) res.partial(`${prefix}${v.name}: A's upload had not all arrived 30 s after it stopped`);
      res.add(`${prefix}B same-connection p50, A ${doing}`, 'ms', 'lower', v.name, b.persistent.p50);
      res.add(`${prefix}B same-connection worst, A ${doing}`, 'ms', 'lower', v.name, b.persistent.max);
      res.add(`${prefix}B new connection to response p50, A ${doing}`, 'ms', 'lower', v.name, b.fresh.p50);
      res.add(`${prefix}B new connection to response worst, A ${doing}`, 'ms', 'lower', v.name, b.fresh.max);
      res.add(`${prefix}A ${upload ? 'upload' : 'download'} while B runs`, 'MiB/s', 'higher', v.name, ar.MiBps);
      res.raw({ part: tag, variant: v.name, rep, b, a: ar });
      await sleep(1000); // let the links' queues drain before the next chain
    });
  } finally {
    for (const c of chains) await c.close();
    await procs.stop(relay);
    await procs.stop(broker.child);
  }
}

/** How long the idle connection stays quiet before the download beside it (longer than the cap's 2 s hold). */
const WAN_SETTLE_MS = 2500;
/** Our pools' BROKER_POOL_DECAY_MS on the WAN chain (bursts are 0.5 s apart, well inside it). */
const WAN_POOL_DECAY_MS = 1500;

function fmtBytes(n) {
  if (n >= GiB && n % GiB === 0) return `${n / GiB} GiB`;
  return `${Math.round(n / MiB)} MiB`;
}

/**
 * Issue 3's figure: small keep-alive HTTP requests through the helper's HTTP proxy
 * front-end vs through its SOCKS front-end (one connection each, reused), and
 * straight to the target as the baseline. Ours only: OpenSSH has no HTTP proxy.
 */
async function httpfront(ctx, res) {
  const { sizes } = ctx;
  const budget = new Budget(sizes.budgetS.httpfront);
  const dir = path.join(ctx.dir, 'httpfront');
  const broker = await ours.startBroker(dir, { name: 'broker-http' });
  const expose = await ours.startExpose(broker, dir, { name: 'expose-http' });
  const join = await ours.startJoin(broker, dir, expose.code, { name: 'join-http', http: true });
  const count = sizes.httpRequests;
  res.note(`${count} sequential keep-alive GETs (2-byte body) per run, one reused client connection; target is an HTTP server in the client process`);
  try {
    const modes = [['http', 'ours', join.http], ['socks', 'ours', join.socks], ['direct', 'direct', undefined]];
    await eachRun({ reps: sizes.repeats.httpfront, items: (rep) => rotated(modes, rep), budget, res, label: ([mode]) => mode }, async ([mode, variant, proxy], rep) => {
      ctx.log(`httpfront: ${count} keep-alive requests via ${mode} (run ${rep + 1}/${sizes.repeats.httpfront})`);
      const r = await runJob('httpKeepAlive', { mode, proxy, count, deadlineMs: budget.jobMs(sizes.jobCapMs) }, { hardTimeoutMs: sizes.jobCapMs + 60_000 });
      if (r.errors) res.error(`${mode}: ${r.errors} failed requests (first: ${r.firstError})`);
      if (r.partial) res.partial(`${mode}: ${r.n}/${count} requests before the deadline`);
      const label = mode === 'socks' ? 'SOCKS' : 'HTTP proxy';
      const rows = mode === 'direct' ? ['HTTP proxy', 'SOCKS'] : [label];
      for (const l of rows) {
        res.add(`keep-alive requests/s via ${l}`, 'req/s', 'higher', variant, r.reqPerSec);
        res.add(`keep-alive request p50 via ${l}`, 'ms', 'lower', variant, r.p50);
        res.add(`keep-alive request p99 via ${l}`, 'ms', 'lower', variant, r.p99);
      }
      if (mode !== 'direct') res.add(`target connections used via ${label}`, 'conns', 'lower', variant, r.upstreamConns);
      res.raw({ mode, rep, ...r });
    });
  } finally {
    await Promise.all([join.child, expose.child, broker.child].map((c) => procs.stop(c, 3000)));
  }
}

/**
 * A helper's start: one more helper process (`broker-agent join` / `ssh -L`) beside the
 * chain's own, from spawn to the first answer through it (SOCKS connect, CONNECT, echo,
 * tried every 2 ms until one works), with the device connected long before. Node's own
 * start, our modules and the SSH handshake against OpenSSH's client and `sshd`'s fork.
 */
async function start(ctx, res) {
  const { sizes } = ctx;
  const variants = (await ctx.variants()).filter((v) => v.newHelper);
  const budget = new Budget(sizes.budgetS.start);
  res.note(`${sizes.repeats.start} new helpers per variant, one at a time: spawn to the first echoed request through the new helper's SOCKS port (tried every 2 ms); the device and the other helpers stay connected`);
  await eachRun({ reps: sizes.repeats.start, items: (rep) => rotated(variants, rep), budget, res, label: (v) => v.name }, async (v, rep) => {
    ctx.log(`start: a new helper via ${v.name} (run ${rep + 1}/${sizes.repeats.start})`);
    const port = await freePort();
    const began = performance.now();
    const child = v.newHelper(port);
    try {
      await ossh.probe({ host: '127.0.0.1', port }, ctx.target, 20_000, 2);
      res.add('new helper: spawn to first answer', 'ms', 'lower', v.name, performance.now() - began);
      res.add('new helper: its CPU until then', 'ms', 'lower', v.name, sum(processTree(child.pid), cpuMs));
    } finally {
      await procs.stop(child);
    }
  });
}

const SCENARIOS = { bulk, connections, concurrency, fairness, memory, wan, slowlink, httpfront, start };
module.exports = { SCENARIOS, measured, rotated, nowMs };

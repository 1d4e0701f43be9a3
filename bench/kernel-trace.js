#!/usr/bin/env node
'use strict';
/**
 * What the kernel sees of our chain while connections open one after another: per
 * process and per connection, its CPU time, how many times its event loop woke up,
 * how long a turn ran before its first write (what the next process waits for) and
 * after it, and how often and how long, once woken, it waited for a core. CPU
 * profiles show where a process spends its time; this shows when, relative to the
 * others, on a machine whose cores all our processes share.
 *
 *   node bench/kernel-trace.js [--count N (300)] [--warm N (2000)] [build=DIR]
 *
 * Starts a target and one chain of ours (this checkout's, or a snapshot made by
 * `node bench/ab.js --snapshot DIR`), warms it up with --warm sequential connections,
 * then traces --count more with the kernel's tracer: raw_syscalls:sys_enter/sys_exit
 * and sched:sched_switch/sched_wakeup for every thread of the broker, the device, the
 * helper, the target and this process (the client), trace_clock mono. Needs root, x86_64
 * and tracefs (mounted at /sys/kernel/tracing if it is not). Tracing slows every
 * syscall: compare processes and builds, not absolute times. The tracer is switched
 * off and its settings restored at the end, also on error.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const client = require('./lib/client');
const ours = require('./lib/ours');
const procs = require('./lib/procs');
const { isRunnableCode, ROOT } = require('./lib/snapshot');
const { positiveIntOption } = require('./lib/util');
const { summarise, render } = require('./lib/kernel-trace-summary');

const TRACEFS = '/sys/kernel/tracing';
const EVENTS = ['raw_syscalls/sys_enter', 'raw_syscalls/sys_exit', 'sched/sched_switch', 'sched/sched_wakeup'];

function tracefs() {
  if (process.arch !== 'x64') throw new Error('the syscall numbers read here are x86_64 ones');
  if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new Error('the kernel tracer needs root');
  if (!fs.existsSync(path.join(TRACEFS, 'trace'))) {
    try {
      execFileSync('mount', ['-t', 'tracefs', 'nodev', TRACEFS], { stdio: 'ignore' });
    } catch {
      throw new Error(`no tracefs at ${TRACEFS}, and mounting it failed`);
    }
  }
  const file = (name) => path.join(TRACEFS, name);
  const read = (name) => fs.readFileSync(file(name), 'utf8');
  const write = (name, value) => fs.writeFileSync(file(name), value);
  // Restored at the end: the clock is the one in brackets, set_event_pid is a list.
  const saved = { on: read('tracing_on').trim(), clock: /\[(\w+)\]/.exec(read('trace_clock'))?.[1] ?? 'local', size: read('buffer_size_kb').trim().replace(/\D.*$/, '') };
  return {
    start(tids) {
      write('tracing_on', '0');
      write('trace', '');
      write('trace_clock', 'mono');
      write('buffer_size_kb', '65536');
      write('set_event_pid', tids.join(' '));
      for (const e of EVENTS) write(`events/${e}/enable`, '1');
      write('tracing_on', '1');
    },
    stop() {
      write('tracing_on', '0');
      return read('trace');
    },
    restore() {
      for (const e of EVENTS) {
        try { write(`events/${e}/enable`, '0'); } catch { /* as it was */ }
      }
      try {
        write('set_event_pid', '');
        write('trace', '');
        write('trace_clock', saved.clock);
        if (saved.size) write('buffer_size_kb', saved.size);
        write('tracing_on', saved.on);
      } catch { /* best effort */ }
    },
  };
}

const threadsOf = (pid) => fs.readdirSync(`/proc/${pid}/task`).map(Number);

async function main() {
  const argv = process.argv.slice(2);
  const count = positiveIntOption(argv, 'count', 300);
  const warm = positiveIntOption(argv, 'warm', 2000);
  const build = argv.find((a) => a.startsWith('build='))?.slice('build='.length);
  const code = build ? path.resolve(build) : ROOT;
  if (!isRunnableCode(code)) throw new Error(`${code} is not a snapshot with bin/ and a built dist/ (npm run build, or node bench/ab.js --snapshot DIR)`);
  const tracer = tracefs();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ktrace-'));
  try {
    const t = procs.startNode(path.join(__dirname, 'lib', 'target-server.js'), [], { name: 'target', logFile: path.join(dir, 'target.log') });
    const target = await new Promise((resolve) => t.once('message', (m) => resolve({ host: '127.0.0.1', port: m.port })));
    process.env.BENCH_CODE_DIR = code; // read by ours.js when it spawns the chain
    const chain = await ours.startChain(dir, target, { helpers: 1 });
    process.stderr.write(`[ktrace] chain of ${code} up; ${warm} warm-up connections\n`);
    const warmed = await client.connSetup({ socks: chain.socks, target, count: warm, deadlineMs: 120_000 });
    if (warmed.errors) throw new Error(`warm-up: ${warmed.errors} connections failed (${warmed.firstError})`);
    const pids = { ...chain.roles(), target: t.pid, client: process.pid };
    const roles = {};
    const threads = {};
    for (const [role, pid] of Object.entries(pids)) {
      roles[pid] = role;
      for (const tid of threadsOf(pid)) threads[tid] = role;
    }
    process.stderr.write(`[ktrace] tracing ${count} connections\n`);
    let text;
    let r;
    // Ctrl-C (procs exits the process) must not leave the tracer running.
    const restore = () => tracer.restore();
    process.once('exit', restore);
    try {
      tracer.start(Object.keys(threads));
      r = await client.connSetup({ socks: chain.socks, target, count, deadlineMs: 120_000 });
      text = tracer.stop();
    } finally {
      process.removeListener('exit', restore);
      tracer.restore();
    }
    if (r.errors) throw new Error(`${r.errors} traced connections failed (${r.firstError})`);
    if (r.partial) throw new Error(`only ${r.n} of ${count} connections within 120 s: use a smaller --count`);
    if (/LOST \d+ EVENTS/.test(text)) process.stderr.write('[ktrace] the tracer lost events: use a smaller --count\n');
    process.stdout.write(`${render(summarise(text, { roles, threads, count, cpus: os.cpus().length, order: Object.keys(pids) }), count)}\n`);
    await chain.close();
  } finally {
    await procs.stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench/kernel-trace.js: ${err.message}\n`);
  procs.killAllSync();
  process.exit(1);
});

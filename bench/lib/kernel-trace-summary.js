'use strict';
/**
 * Reads the kernel tracer's text output (tracefs `trace`, events raw_syscalls:sys_enter,
 * raw_syscalls:sys_exit, sched:sched_switch, sched:sched_wakeup, trace_clock mono) for
 * the threads of a chain's processes, and says per process and per connection what the
 * event loop did: how often it woke up, how long it then ran before its first write and
 * after it, how long it waited for a core once woken, and its CPU time.
 *
 * A turn is what a main thread does from an epoll wait that returned events to its
 * next epoll wait. x86_64 syscall numbers.
 */

const { median } = require('./util');

/** x86_64: epoll_wait, epoll_pwait, epoll_pwait2. */
const EPOLL = new Set([232, 281, 441]);
/** x86_64: write, writev, sendto, sendmsg, connect: what hands work to another process. */
const HAND_ON = new Set([1, 20, 44, 46, 42]);
/** A woken thread waiting longer than this for a core is counted as kept waiting. */
const LONG_WAIT_US = 100;

const LINE = /^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (\w+): (.*)$/;

/**
 * `text`: the trace. `roles`: main thread id -> role name (e.g. broker). `threads`:
 * thread id -> role, for every thread of those processes (main threads included).
 * `count`: connections made while tracing (the per-connection divisor). `order`: role
 * names in the order to list them (others follow); `cpus`: the machine's CPU count
 * (default: the CPUs seen in the trace).
 */
function summarise(text, { roles, threads, count, cpus: cpuCount, order = [] }) {
  const per = {};
  const role = (name) => (per[name] ??= { cpuUs: 0, turns: [], toFirstWrite: [], afterFirstWrite: 0, waits: [] });
  for (const name of Object.values(roles)) role(name);
  const loop = {}; // main thread id -> { woke, firstWrite }
  const woken = {}; // thread id -> time of its wake-up, until it runs
  const since = {}; // cpu -> time its current task started
  let first;
  let last;
  let idleUs = 0;
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const pid = Number(m[2]);
    const cpu = m[3];
    const t = Number(m[4]) * 1e6;
    const event = m[5];
    const rest = m[6];
    first ??= t;
    last = t;
    if (event === 'sched_wakeup') {
      const p = Number(/\bpid=(\d+)/.exec(rest)?.[1]);
      if (roles[p] !== undefined && woken[p] === undefined) woken[p] = t;
      continue;
    }
    if (event === 'sched_switch') {
      const prev = Number(/prev_pid=(\d+)/.exec(rest)?.[1]);
      const next = Number(/next_pid=(\d+)/.exec(rest)?.[1]);
      if (since[cpu] !== undefined) {
        const ran = t - since[cpu];
        if (threads[prev] !== undefined) role(threads[prev]).cpuUs += ran;
        else if (prev === 0) idleUs += ran;
      }
      since[cpu] = t;
      if (roles[next] !== undefined && woken[next] !== undefined) {
        role(roles[next]).waits.push(t - woken[next]);
        woken[next] = undefined;
      }
      continue;
    }
    const name = roles[pid];
    if (name === undefined) continue;
    const nr = Number(/NR (\d+)/.exec(rest)?.[1]);
    const l = (loop[pid] ??= {});
    if (event === 'sys_exit' && EPOLL.has(nr)) {
      const ret = Number(/= (-?\d+)/.exec(rest)?.[1]);
      if (ret > 0) {
        l.woke = t;
        l.firstWrite = undefined;
      }
    } else if (event === 'sys_enter' && l.woke !== undefined) {
      if (EPOLL.has(nr)) {
        const r = role(name);
        r.turns.push(t - l.woke);
        if (l.firstWrite !== undefined) r.afterFirstWrite += t - l.firstWrite;
        l.woke = undefined;
      } else if (HAND_ON.has(nr) && l.firstWrite === undefined) {
        l.firstWrite = t;
        role(name).toFirstWrite.push(t - l.woke);
      }
    }
  }
  const spanUs = first === undefined ? 0 : last - first;
  const cpus = cpuCount ?? (Object.keys(since).length || 1);
  const n = Math.max(1, count);
  const rank = (name) => (order.includes(name) ? order.indexOf(name) : order.length);
  const rows = Object.entries(per).sort(([a], [b]) => rank(a) - rank(b)).map(([name, r]) => {
    const long = r.waits.filter((w) => w > LONG_WAIT_US);
    return {
      role: name,
      cpuUsPerConn: r.cpuUs / n,
      turnsPerConn: r.turns.length / n,
      turnUsMedian: median(r.turns),
      toFirstWriteUsMedian: median(r.toFirstWrite),
      afterFirstWriteUsPerConn: r.afterFirstWrite / n,
      keptWaitingPerConn: long.length / n,
      keptWaitingUsPerConn: long.reduce((s, w) => s + w, 0) / n,
    };
  });
  return { rows, spanMs: spanUs / 1000, busyShare: spanUs > 0 ? 1 - idleUs / (spanUs * cpus) : NaN, cpus };
}

/** The table `kernel-trace.js` prints. */
function render({ rows, spanMs, busyShare, cpus }, count) {
  const head = ['process', 'CPU µs', 'turns', 'turn µs (p50)', 'to 1st write µs (p50)', 'after it µs', 'kept waiting', 'waiting µs'];
  const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const lines = rows.map((r) => [r.role, fmt(r.cpuUsPerConn), fmt(r.turnsPerConn, 1), fmt(r.turnUsMedian), fmt(r.toFirstWriteUsMedian), fmt(r.afterFirstWriteUsPerConn), fmt(r.keptWaitingPerConn, 2), fmt(r.keptWaitingUsPerConn)]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const row = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [
    `per connection (${count} traced; the tracer slows every syscall, so compare processes and builds, not absolute times)`,
    row(head),
    ...lines.map(row),
    `${fmt(spanMs)} ms traced; the ${cpus} CPUs were busy ${fmt(busyShare * 100, 1)} % of it. "kept waiting": wake-ups that waited over ${LONG_WAIT_US} µs for a core.`,
  ].join('\n');
}

module.exports = { summarise, render, LONG_WAIT_US };

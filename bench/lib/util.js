'use strict';
/** Small helpers shared by the benchmark: statistics, timing, ports, /proc readers. */
const fs = require('node:fs');
const net = require('node:net');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function nowMs() {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Percentile (nearest-rank, p in 0..100) of an array of numbers; NaN when empty. */
function percentile(values, p) {
  if (!values || values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank];
}

function median(values) {
  if (!values || values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function summary(values) {
  const v = (values || []).filter((x) => Number.isFinite(x));
  if (v.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN };
  return { n: v.length, median: median(v), min: Math.min(...v), max: Math.max(...v) };
}

/** A free TCP port on 127.0.0.1 (bind to 0, read it, close). Racy but fine on a quiet box. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolve when something accepts TCP connections on host:port (or reject after timeoutMs). */
async function waitForPort(port, host = '127.0.0.1', timeoutMs = 15000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Resident set size of a process in KiB (VmRSS), or NaN if gone. */
function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Proportional set size in KiB (shared pages split between sharers), or the RSS if unavailable. */
function pssKiB(pid) {
  try {
    const m = /^Pss:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    if (m) return Number(m[1]);
  } catch { /* fall through */ }
  return rssKiB(pid);
}

/** The fields of /proc/PID/stat after the command name (field 3, the state, first); undefined if it is gone. */
function statFields(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * What a process has used so far, from one read of /proc/PID/stat: CPU time (user+system)
 * in ms, and minor page faults. On a virtual machine a fault can cost 10-20 µs (the
 * 2026-11-27 machine: 16 µs), so faults per unit of work can explain CPU per unit of work.
 */
function usage(pid) {
  const f = statFields(pid);
  if (!f) return { cpuMs: NaN, minorFaults: NaN };
  return { cpuMs: ((Number(f[11]) + Number(f[12])) * 1000) / 100, minorFaults: Number(f[7]) }; // USER_HZ is 100 on Linux
}

/** Total CPU time (user+system) of a process in ms. */
function cpuMs(pid) {
  return usage(pid).cpuMs;
}

/** Direct children of pid (scans /proc). */
function childrenOf(pid) {
  const out = [];
  let entries = [];
  try { entries = fs.readdirSync('/proc'); } catch { return out; }
  for (const e of entries) {
    if (/^\d+$/.test(e) && Number(statFields(e)?.[1]) === pid) out.push(Number(e));
  }
  return out;
}

/** pid and all its descendants. */
function processTree(pid) {
  const all = [pid];
  for (let i = 0; i < all.length && all.length < 5000; i++) all.push(...childrenOf(all[i]));
  return all;
}

function machineInfo() {
  const os = require('node:os');
  let cpu = 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1].trim();
  } catch { /* ignore */ }
  return {
    nproc: os.cpus().length,
    cpu,
    memMiB: Math.round(os.totalmem() / 1048576),
    kernel: os.release(),
    node: process.version,
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
}

/** `--NAME N` from argv as a positive integer, or `dflt` when absent; throws on anything else. */
function positiveIntOption(argv, name, dflt) {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  return v;
}

/** Run fn with a deadline; resolves with fn's value or rejects with a timeout error. */
function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms); }),
  ]);
}

module.exports = {
  sleep, nowMs, percentile, median, summary, freePort, waitForPort, rssKiB, pssKiB, cpuMs, usage,
  childrenOf, processTree, machineInfo, withTimeout, positiveIntOption,
};

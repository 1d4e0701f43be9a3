'use strict';
/**
 * Every process the benchmark starts goes through here, so that all of them
 * (and their descendants, e.g. sshd's per-connection children) are killed on
 * normal exit, on error and on SIGINT/SIGTERM. Only pids we started (or their
 * descendants) are ever signalled.
 */
const { spawn, fork } = require('node:child_process');
const fs = require('node:fs');
const { processTree, sleep } = require('./util');

const live = new Set();
let installed = false;

function install() {
  if (installed) return;
  installed = true;
  process.on('exit', () => killAllSync());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping every process we started...\n`);
      killAllSync();
      process.exit(130);
    });
  }
}

/** Track a ChildProcess; `name` is for messages; optional log file gets stdout/stderr if piped. */
function track(child, name) {
  install();
  const entry = { child, name, pid: child.pid, exited: false };
  live.add(entry);
  child.once('exit', () => { entry.exited = true; live.delete(entry); });
  child.on('error', () => { /* reported by callers via exit */ });
  return entry;
}

/**
 * Spawn a program; stdout/stderr go to `logFile` (appended) unless `pipeStdout` is set,
 * in which case stdout is a pipe the caller must drain.
 */
function start(cmd, args, { name, logFile, pipeStdout = false, stdinPipe = false, env, cwd } = {}) {
  const out = logFile ? fs.openSync(logFile, 'a') : 'ignore';
  const child = spawn(cmd, args, {
    stdio: [stdinPipe ? 'pipe' : 'ignore', pipeStdout ? 'pipe' : out, out],
    env: env ?? process.env,
    cwd,
  });
  if (typeof out === 'number') fs.closeSync(out);
  track(child, name ?? cmd);
  return child;
}

/** Fork a Node script with an IPC channel. */
function startNode(script, args, { name, logFile, execArgv = [], env } = {}) {
  const out = logFile ? fs.openSync(logFile, 'a') : 'ignore';
  const child = fork(script, args, { stdio: ['ignore', out, out, 'ipc'], execArgv, env: env ?? process.env });
  if (typeof out === 'number') fs.closeSync(out);
  track(child, name ?? script);
  return child;
}

/**
 * Fork a Node script that reports over IPC once it is ready (a listening port, say):
 * resolves { child, message } with its first message, rejects if it exits first.
 */
async function startNodeReporting(script, args, opts = {}) {
  const child = startNode(script, args, opts);
  const message = await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code, sig) => reject(new Error(`${opts.name ?? script} exited (${code ?? sig}) before it was ready`)));
  });
  return { child, message };
}

/** Resolve with the first parsed JSON line on child's stdout matching pred (keeps draining afterwards). */
function waitForJsonLine(child, pred, timeoutMs, what, onLine) {
  return new Promise((resolve, reject) => {
    let buf = '';
    let done = false;
    const timer = setTimeout(() => finish(new Error(`${what}: no matching output within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(value);
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (onLine) onLine(line);
        if (done) continue;
        let obj;
        try { obj = JSON.parse(line); } catch { continue; }
        if (pred(obj)) finish(null, obj);
      }
      if (buf.length > 1 << 20) buf = '';
    });
    child.once('exit', (code, sig) => finish(new Error(`${what}: exited (${code ?? sig}) before it was ready`)));
  });
}

/** Stop one tracked child (and its descendants): SIGTERM, then SIGKILL after graceMs. */
async function stop(child, graceMs = 1500) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const pids = processTree(child.pid).reverse();
  const exited = new Promise((r) => child.once('exit', r));
  for (const p of pids) { try { process.kill(p, 'SIGTERM'); } catch { /* gone */ } }
  await Promise.race([exited, sleep(graceMs)]);
  for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
}

async function stopAll() {
  await Promise.all([...live].map((e) => stop(e.child)));
}

function killAllSync() {
  for (const e of [...live]) {
    if (e.exited) continue;
    let pids = [e.pid];
    try { pids = processTree(e.pid).reverse(); } catch { /* ignore */ }
    for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
  }
  live.clear();
}

module.exports = { start, startNode, startNodeReporting, stop, stopAll, killAllSync, waitForJsonLine, track };

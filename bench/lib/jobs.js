'use strict';
/** Orchestrator side of worker.js: run one measurement in a fresh process. */
const path = require('node:path');
const procs = require('./procs');

const WORKER = path.join(__dirname, 'worker.js');

/**
 * Start `job` in a new worker. Returns { done, held, release }:
 * - done: promise of the result (rejects on error / hard timeout);
 * - held: promise resolving with the worker's hold info when it holds (if it does);
 * - release(): let a holding worker continue.
 */
function startJob(job, params, { hardTimeoutMs = 180_000, logFile } = {}) {
  const child = procs.startNode(WORKER, [], { name: `worker:${job}`, logFile });
  let heldResolve;
  const held = new Promise((r) => { heldResolve = r; });
  const done = new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settle(new Error(`${job}: worker hard timeout after ${hardTimeoutMs} ms`));
      void procs.stop(child, 200);
    }, hardTimeoutMs);
    const settle = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(value);
    };
    child.on('message', (m) => {
      if (m.type === 'hold') heldResolve(m.info);
      else if (m.type === 'result') settle(null, m.result);
      else if (m.type === 'error') settle(new Error(`${job}: ${m.error}`));
    });
    child.once('exit', (code, sig) => settle(new Error(`${job}: worker exited (${code ?? sig}) without a result`)));
  });
  child.send({ type: 'run', job, params });
  return {
    done,
    held,
    release: () => { if (child.connected) child.send({ type: 'release' }); },
  };
}

/** Run a job to completion; `onHold(info)` is awaited while the worker holds. */
async function runJob(job, params, opts = {}) {
  const j = startJob(job, params, opts);
  if (opts.onHold) {
    void j.held.then(async (info) => {
      try { await opts.onHold(info); } finally { j.release(); }
    });
  }
  return j.done;
}

module.exports = { startJob, runJob };

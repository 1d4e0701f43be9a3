'use strict';
/**
 * A load-generator process: the orchestrator forks one per measurement (so the
 * client never shares an event loop with the target server, the tunnels or the
 * orchestrator) and sends { job, params }. Jobs that hold something open
 * (idle streams, the background download of the fairness scenario) send
 * { type: 'hold', info } and wait for { type: 'release' }.
 */
const client = require('./client');

const jobs = {
  bulkDownload: client.bulkDownload,
  downloadBesideIdle: client.downloadBesideIdle,
  bulkUpload: client.bulkUpload,
  connSetup: client.connSetup,
  concurrency: client.concurrency,
  idleStreams: client.idleStreams,
  tinyLatency: client.tinyLatency,
  bulkUntilStopped: client.bulkUntilStopped,
  wanTimings: client.wanTimings,
  wanBurst: client.wanBurst,
  httpKeepAlive: client.httpKeepAlive,
};

let releaseWaiter = null;
process.on('message', async (msg) => {
  if (msg.type === 'release') {
    if (releaseWaiter) { const r = releaseWaiter; releaseWaiter = null; r(); }
    return;
  }
  if (msg.type !== 'run') return;
  const fn = jobs[msg.job];
  const hold = (info) => new Promise((resolve) => {
    releaseWaiter = resolve;
    process.send({ type: 'hold', info });
  });
  try {
    if (!fn) throw new Error(`unknown job ${msg.job}`);
    const result = await fn(msg.params, hold);
    process.send({ type: 'result', result }, () => process.exit(0));
  } catch (err) {
    process.send({ type: 'error', error: String((err && err.stack) || err) }, () => process.exit(1));
  }
});
process.on('disconnect', () => process.exit(0));

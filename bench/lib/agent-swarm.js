'use strict';
/**
 * Many exposing devices in ONE process (1,000 `broker-agent` processes would
 * measure the machine, not the broker): N `Agent` instances from dist/, each its
 * own SSH connection, reverse tunnel and session on the broker.
 *
 * Forked with IPC; message { broker, fingerprint, knownBrokersFile, count, concurrency, deadlineMs }.
 * Replies { type: 'ready', ok, failed, ms, firstError } and keeps every session
 * open until the parent disconnects or sends { type: 'close' }.
 */
const path = require('node:path');

const DIST = path.join(process.env.BENCH_CODE_DIR || path.resolve(__dirname, '..', '..'), 'dist');
const { Agent } = require(path.join(DIST, 'agent', 'agent.js'));
const { makeDescriptor } = require(path.join(DIST, 'protocol', 'descriptor.js'));

const agents = [];

process.on('message', async (msg) => {
  if (msg.type === 'close') {
    for (const a of agents) a.close();
    setTimeout(() => process.exit(0), 500);
    return;
  }
  if (msg.type !== 'start') return;
  const { broker, fingerprint, knownBrokersFile, count, concurrency = 16, deadlineMs = 120_000 } = msg;
  const descriptor = makeDescriptor({ label: 'bench-idle', allow: ['127.0.0.1'] });
  const t0 = Date.now();
  let next = 0;
  let ok = 0;
  let failed = 0;
  let firstError;
  const runner = async () => {
    while (next < count && Date.now() - t0 < deadlineMs) {
      next++;
      const agent = new Agent({ broker, descriptor, fingerprint, knownBrokersFile });
      agent.on('ended', () => { /* counted at the end if it matters */ });
      try {
        await agent.start();
        agents.push(agent);
        ok++;
      } catch (err) {
        failed++;
        firstError ??= String((err && err.message) || err);
        agent.close();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, runner));
  process.send({ type: 'ready', ok, failed, ms: Date.now() - t0, firstError, partial: ok + failed < count });
});
process.on('disconnect', () => {
  for (const a of agents) a.close();
  setTimeout(() => process.exit(0), 300);
});

'use strict';
/**
 * The "plain-node" variant: our chain's shape (a device, a broker, two helpers, each
 * its own Node process) built from bench/lib/plain-relay.js, with no SSH. Clients
 * speak SOCKS5 to a helper, which pipes to the broker, which pipes to the device,
 * which answers SOCKS and dials the target. It tells how much of a gap to OpenSSH is
 * Node's own cost per wake-up and per socket on this machine, and how much is ours.
 */
const fs = require('node:fs');
const path = require('node:path');
const procs = require('./procs');
const { probe } = require('./openssh');

async function startRelay(args, name, dir) {
  const { child, message } = await procs.startNodeReporting(path.join(__dirname, 'plain-relay.js'), args, { name, logFile: path.join(dir, `${name}.log`) });
  return { child, port: message.port };
}

async function startChain(dir, target, { helpers = 2 } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const device = await startRelay(['socks'], 'plain-device', dir);
  const broker = await startRelay(['pipe', String(device.port)], 'plain-broker', dir);
  const hs = [];
  for (let i = 0; i < helpers; i++) hs.push(await startRelay(['pipe', String(broker.port)], `plain-helper-${i}`, dir));
  const socks = hs.map((h) => ({ host: '127.0.0.1', port: h.port }));
  for (const s of socks) await probe(s, target);
  const all = [device, broker, ...hs];
  return {
    name: 'plain-node',
    socks: socks[0],
    socksB: socks[1],
    pids: () => all.map((p) => p.child.pid),
    close: async () => { await Promise.all(all.map((p) => procs.stop(p.child))); },
  };
}

module.exports = { startChain };

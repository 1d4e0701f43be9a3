'use strict';
/**
 * User-space WAN emulation (this kernel has no `tc netem`): a TCP relay that
 * forwards every chunk, in order, after a fixed one-way delay, in both
 * directions. EOF and resets are delayed the same way. Loopback only.
 *
 * Usage (forked with IPC): node delay-relay.js DELAY_MS TARGET_PORT[,TARGET_PORT...]
 * Listens on one free 127.0.0.1 port per target and sends {ports:[...]} over IPC.
 * Timers with equal durations fire in insertion order in Node, so ordering holds.
 */
const net = require('node:net');

function delayedPipe(from, to, delayMs) {
  from.on('data', (chunk) => {
    setTimeout(() => { if (!to.destroyed) to.write(chunk); }, delayMs);
  });
  from.on('end', () => setTimeout(() => { if (!to.destroyed) to.end(); }, delayMs));
}

function relayServer(targetPort, delayMs) {
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    client.setNoDelay(true);
    client.pause();
    // TCP handshakes are not delayed: they only happen when an SSH connection is set
    // up, which no scenario times; every byte after that is.
    setTimeout(() => {
      const upstream = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true, noDelay: true });
      upstream.setNoDelay(true);
      upstream.once('connect', () => {
        setTimeout(() => {
          delayedPipe(client, upstream, delayMs);
          delayedPipe(upstream, client, delayMs);
          client.resume();
        }, 0);
      });
      const kill = (other) => () => setTimeout(() => other.destroy(), delayMs);
      upstream.on('error', kill(client));
      client.on('error', kill(upstream));
      upstream.on('close', kill(client));
      client.on('close', kill(upstream));
    }, 0);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

if (require.main === module) {
  const delayMs = Number(process.argv[2]);
  const targets = String(process.argv[3]).split(',').map(Number);
  Promise.all(targets.map((t) => relayServer(t, delayMs))).then((ports) => {
    process.send({ ports });
  });
  process.on('disconnect', () => process.exit(0));
}

module.exports = { relayServer };

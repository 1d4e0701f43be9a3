'use strict';
/**
 * User-space WAN emulation (this kernel has no `tc netem`): a TCP relay that
 * forwards every chunk, in order, after a fixed one-way delay, in both
 * directions. EOF and resets are delayed the same way. Loopback only.
 *
 * With a rate, each direction of each relayed connection is also a link of that
 * bandwidth (a slow uplink): chunks leave one after another at the rate, then
 * travel the delay. What waits to be sent is queued here, up to LINK_QUEUE bytes;
 * beyond that the relay stops reading, and the sender's TCP buffers fill as they
 * would in front of a real modem.
 *
 * Usage (forked with IPC): node delay-relay.js DELAY_MS TARGET_PORT[,TARGET_PORT...] [RATE_BYTES_PER_S[,...]]
 * (one rate for all targets, or one per target; 0 = delay only)
 * Listens on one free 127.0.0.1 port per target and sends {ports:[...]} over IPC.
 * Timers with equal durations fire in insertion order in Node, so ordering holds.
 */
const net = require('node:net');

/** Bytes a rate-limited direction queues before it stops reading its source. */
const LINK_QUEUE = 256 * 1024;
/**
 * A rate-limited direction delivers what it reads in pieces of at most this much link
 * time (and at least 1500 bytes), each when its last byte has crossed: a real link
 * delivers packets one by one. Delivered whole, a 64 KiB read arrived as one burst
 * 52 ms after the previous one at 10 Mbit/s, and a receiver measuring its rate over
 * one round trip saw up to 2.5 times the link's.
 */
const LINK_PIECE_MS = 2;

function delayedPipe(from, to, delayMs) {
  from.on('data', (chunk) => {
    setTimeout(() => { if (!to.destroyed) to.write(chunk); }, delayMs);
  });
  from.on('end', () => setTimeout(() => { if (!to.destroyed) to.end(); }, delayMs));
}

/** `from` → `to` through a link of `rate` bytes/s and `delayMs` one way: one timer, chunks in order. */
function linkPipe(from, to, delayMs, rate) {
  const queue = []; // { at, data } or { at, end: true }, in order of delivery
  let timer = null;
  let linkFreeAt = 0; // when the link has sent everything queued so far
  let resumeTimer = null;
  const deliver = () => {
    timer = null;
    const now = performance.now();
    while (queue.length && queue[0].at <= now + 0.3) {
      const item = queue.shift();
      if (item.end) {
        if (!to.destroyed) to.end();
      } else if (!to.destroyed) to.write(item.data);
    }
    if (queue.length) timer = setTimeout(deliver, Math.max(0, queue[0].at - performance.now()));
  };
  const enqueue = (item, bytes) => {
    const now = performance.now();
    linkFreeAt = Math.max(now, linkFreeAt) + (bytes / rate) * 1000;
    item.at = linkFreeAt + delayMs;
    queue.push(item);
    if (!timer) timer = setTimeout(deliver, Math.max(0, queue[0].at - now));
  };
  const piece = Math.max(1500, Math.round((rate * LINK_PIECE_MS) / 1000));
  from.on('data', (data) => {
    for (let off = 0; off < data.length; off += piece) {
      const part = data.subarray(off, off + piece);
      enqueue({ data: part }, part.length);
    }
    // What waits to be sent (not what is on its way): stop reading beyond LINK_QUEUE,
    // and read again once half of it has been sent.
    const now = performance.now();
    if (resumeTimer || ((linkFreeAt - now) * rate) / 1000 <= LINK_QUEUE) return;
    from.pause();
    resumeTimer = setTimeout(() => {
      resumeTimer = null;
      if (!from.readableEnded) from.resume();
    }, Math.max(0, linkFreeAt - ((LINK_QUEUE / 2) / rate) * 1000 - now));
  });
  from.on('end', () => enqueue({ end: true }, 0));
}

function relayServer(targetPort, delayMs, rate = 0) {
  const pipe = rate > 0 ? (from, to) => linkPipe(from, to, delayMs, rate) : (from, to) => delayedPipe(from, to, delayMs);
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
          pipe(client, upstream);
          pipe(upstream, client);
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
  // One rate for every target, or one per target (0: delay only).
  const rates = String(process.argv[4] ?? '0').split(',').map((r) => Number(r) || 0);
  Promise.all(targets.map((t, i) => relayServer(t, delayMs, rates.length > 1 ? rates[i] ?? 0 : rates[0]))).then((ports) => {
    process.send({ ports });
  });
  process.on('disconnect', () => process.exit(0));
}

module.exports = { relayServer };

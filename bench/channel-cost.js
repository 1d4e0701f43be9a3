#!/usr/bin/env node
'use strict';
/**
 * What one stream costs on one leg when it is an SSH channel (ssh2, as every leg of
 * ours is) against a TCP connection of its own (as every leg of bench/lib/plain-node.js
 * is), in Node, on this machine. Two processes each way, side by side in one run:
 *
 *   tcp   a client process connects to a server process, writes 32 bytes, reads the
 *         echo, ends; the server echoes and ends after the client's FIN
 *   ssh2  the same over one warm SSH connection (aes128-gcm, ssh2's native binding,
 *         TCP_NODELAY): a direct-tcpip channel opened, 32 bytes each way, EOF, CLOSE
 *
 * Prints cycles/s and CPU µs per cycle of each process (medians of --repeats
 * interleaved runs of --count sequential cycles) and the ratio ssh2 / tcp. No
 * broker, policy, logging or relaying: the bare cost of the transport per stream.
 *
 *   node bench/channel-cost.js [--count N (2000)] [--repeats N (5)]
 *
 * Traffic stays on 127.0.0.1. Every loop is bounded by its count and a 60 s deadline.
 */
const net = require('node:net');
const { usage, median, positiveIntOption } = require('./lib/util');
const procs = require('./lib/procs');

const DEADLINE_MS = 60_000;
const PAYLOAD = Buffer.alloc(32, 0x61);

/** The server side, in its own process: `node channel-cost.js --serve tcp|ssh2`. */
function serve(kind) {
  if (kind === 'tcp') {
    const server = net.createServer({ noDelay: true }, (sock) => {
      sock.on('data', (d) => sock.write(d));
      sock.on('error', () => sock.destroy());
    });
    server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
    return;
  }
  const { Server, utils } = require('ssh2');
  const server = new Server({ hostKeys: [utils.generateKeyPairSync('ecdsa', { bits: 256 }).private] }, (client) => {
    client.on('authentication', (ctx) => ctx.accept());
    client.on('ready', () => client.on('tcpip', (accept) => {
      const ch = accept();
      ch.on('data', (d) => ch.write(d));
      ch.on('end', () => ch.end());
    }));
    client.on('error', () => {});
  });
  server.on('connection', (sock) => sock.setNoDelay(true));
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
}

function tcpCycle(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true });
    sock.once('connect', () => sock.write(PAYLOAD));
    sock.once('data', () => sock.end());
    sock.on('error', reject);
    sock.once('close', resolve);
    sock.resume();
  });
}

async function sshClient(port) {
  const { Client } = require('ssh2');
  const c = new Client();
  await new Promise((resolve, reject) => {
    c.once('ready', resolve);
    c.once('error', reject);
    c.connect({ host: '127.0.0.1', port, username: 'bench', password: 'x', algorithms: { cipher: ['aes128-gcm@openssh.com'] } });
  });
  c._sock.setNoDelay(true); // ssh2 leaves Nagle on
  const cycle = () => new Promise((resolve, reject) => c.forwardOut('127.0.0.1', 0, '127.0.0.1', 1, (err, ch) => {
    if (err) { reject(err); return; }
    ch.once('data', () => ch.end());
    ch.once('close', resolve);
    ch.write(PAYLOAD);
  }));
  return { cycle, close: () => c.end() };
}

async function timed(cycle, count, serverPid) {
  const c0 = usage(process.pid).cpuMs;
  const s0 = usage(serverPid).cpuMs;
  const t0 = performance.now();
  let n = 0;
  while (n < count && performance.now() - t0 < DEADLINE_MS) { await cycle(); n++; }
  const ms = performance.now() - t0;
  return { perS: (n * 1000) / ms, clientUs: ((usage(process.pid).cpuMs - c0) * 1000) / n, serverUs: ((usage(serverPid).cpuMs - s0) * 1000) / n, n };
}

async function main() {
  const count = positiveIntOption(process.argv, 'count', 2000);
  const repeats = positiveIntOption(process.argv, 'repeats', 5);
  const start = async (kind) => {
    const { child, message } = await procs.startNodeReporting(__filename, ['--serve', kind], { name: `${kind}-server` });
    return { child, port: message.port };
  };
  const tcpServer = await start('tcp');
  const sshServer = await start('ssh2');
  const ssh = await sshClient(sshServer.port);
  const kinds = {
    tcp: { cycle: () => tcpCycle(tcpServer.port), pid: tcpServer.child.pid, runs: [] },
    ssh2: { cycle: ssh.cycle, pid: sshServer.child.pid, runs: [] },
  };
  try {
    for (const k of Object.values(kinds)) await timed(k.cycle, Math.min(count, 2000), k.pid); // warm-up, V8 optimises
    for (let rep = 0; rep < repeats; rep++) {
      for (const name of rep % 2 ? ['ssh2', 'tcp'] : ['tcp', 'ssh2']) {
        const r = await timed(kinds[name].cycle, count, kinds[name].pid);
        kinds[name].runs.push(r);
        process.stderr.write(`[channel-cost] run ${rep + 1}/${repeats} ${name}: ${r.perS.toFixed(0)}/s, CPU µs per cycle client ${r.clientUs.toFixed(0)} server ${r.serverUs.toFixed(0)}\n`);
      }
    }
  } finally {
    ssh.close();
    await procs.stopAll();
  }
  const med = (name, key) => median(kinds[name].runs.map((r) => r[key]));
  const rows = [['cycles/s', 'perS'], ['CPU µs per cycle, client', 'clientUs'], ['CPU µs per cycle, server', 'serverUs']];
  process.stdout.write(`\none stream on one leg: ${count} sequential cycles (open, 32 bytes each way, close), medians of ${repeats} interleaved runs\n`);
  process.stdout.write(`${'metric'.padEnd(26)}${'tcp'.padStart(10)}${'ssh2'.padStart(10)}${'ssh2/tcp'.padStart(10)}\n`);
  for (const [label, key] of rows) {
    const t = med('tcp', key);
    const s = med('ssh2', key);
    process.stdout.write(`${label.padEnd(26)}${t.toFixed(0).padStart(10)}${s.toFixed(0).padStart(10)}${`${(s / t).toFixed(2)}x`.padStart(10)}\n`);
  }
}

if (process.argv[2] === '--serve') serve(process.argv[3]);
else main().catch(async (err) => { process.stderr.write(`channel-cost: ${err.stack || err}\n`); await procs.stopAll(); process.exit(2); });

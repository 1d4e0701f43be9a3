'use strict';
/**
 * The destination every variant reaches: a raw-TCP server on 127.0.0.1 with a
 * one-line command, run in its own process so that it never shares an event loop
 * with the load generator.
 *
 *   "G <bytes>\n"  server streams <bytes> bytes, then ends       (bulk download)
 *   "P <bytes>\n"  server sinks <bytes> bytes, answers "OK\n"    (bulk upload)
 *   "U\n"          server sinks until EOF, answering "<total bytes so far>\n" each
 *                  time another 64 KiB arrived                   (upload until stopped)
 *   "E\n"          echo every following byte back               (tiny requests)
 *   "H\n"          hold the connection open, echo like "E"       (idle streams)
 *
 * Usage: node target-server.js [port]   prints {"port":N} on stdout (IPC: sends it).
 */
const net = require('node:net');

const CHUNK = Buffer.alloc(256 * 1024, 0x61);

function serveGet(sock, total) {
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      const ok = sock.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
      if (!ok) { sock.once('drain', pump); return; }
    }
    sock.end();
  };
  pump();
}

function onConnection(sock) {
  sock.setNoDelay(true);
  let head = Buffer.alloc(0);
  const onHead = (chunk) => {
    head = head.length ? Buffer.concat([head, chunk]) : chunk;
    const nl = head.indexOf(10);
    if (nl < 0) {
      if (head.length > 64) sock.destroy();
      return;
    }
    sock.off('data', onHead);
    const line = head.subarray(0, nl).toString('latin1');
    const rest = head.subarray(nl + 1);
    const cmd = line[0];
    if (cmd === 'G') {
      serveGet(sock, Number(line.slice(2)) || 0);
      sock.resume();
    } else if (cmd === 'P') {
      let left = Number(line.slice(2)) || 0;
      const take = (c) => {
        left -= c.length;
        if (left <= 0) { sock.off('data', take); sock.end('OK\n'); }
      };
      sock.on('data', take);
      if (rest.length) take(rest);
      else if (left <= 0) take(Buffer.alloc(0));
    } else if (cmd === 'U') {
      let total = 0;
      let told = 0;
      const take = (c) => {
        total += c.length;
        if (total - told >= 64 * 1024) { told = total; sock.write(`${total}\n`); }
      };
      sock.on('data', take);
      sock.on('end', () => sock.end(`${total}\n`));
      if (rest.length) take(rest);
    } else if (cmd === 'E' || cmd === 'H') {
      if (rest.length) sock.write(rest);
      sock.on('data', (c) => sock.write(c));
      sock.on('end', () => sock.end());
    } else {
      sock.destroy();
    }
  };
  sock.on('data', onHead);
  sock.on('error', () => sock.destroy());
}

if (require.main === module) {
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, onConnection);
  server.maxConnections = 20000;
  server.listen({ port: Number(process.argv[2] || 0), host: '127.0.0.1', backlog: 4096 }, () => {
    const msg = { port: server.address().port };
    if (process.send) process.send(msg);
    else process.stdout.write(`${JSON.stringify(msg)}\n`);
  });
  process.on('disconnect', () => process.exit(0));
}

module.exports = { onConnection };

#!/usr/bin/env node
'use strict';
/**
 * Destination servers for the e2e tests: what a helper reaches on the device's
 * network. Plain JavaScript so that it can run as its own process inside a network
 * namespace (`ip netns exec NS node target-server.js ...`) as well as in-process
 * (the harness requires it).
 *
 * HTTP server:
 *   GET  /                      → 200 "<marker>\n"
 *   GET  /whoami                → 200 the client's address as this server sees it
 *   GET  /blob?bytes=N&seed=S   → N deterministic bytes, header x-sha256 = their hex digest
 *   POST /sha256                → {"bytes":N,"sha256":"<hex>"} of the request body
 * Half-close server (raw TCP): reads until the client's EOF, then writes
 *   {"bytes":N,"sha256":"<hex>"}\n and closes. Proves EOF travels one way while data
 *   still flows the other way.
 *
 * As a program: node target-server.js --host H [--port P] [--halfclose-port Q] [--marker M]
 * prints one line {"event":"listening","http":P,"halfclose":Q} on stdout.
 */
const crypto = require('node:crypto');
const http = require('node:http');
const net = require('node:net');

/** Largest blob served (the tests use a few MiB). */
const MAX_BLOB = 64 * 1024 * 1024;

/** N pseudo-random bytes from a seed (AES-CTR keystream: fast and reproducible). */
function blob(bytes, seed) {
  const key = crypto.createHash('sha256').update(`key:${seed}`).digest().subarray(0, 16);
  const iv = crypto.createHash('sha256').update(`iv:${seed}`).digest().subarray(0, 16);
  return crypto.createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(bytes));
}

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

/** The HTTP target. `marker` is what GET / returns, so a test knows which server answered. */
function createHttpTarget(marker) {
  return http.createServer((req, res) => {
    const url = new URL(req.url || '/', 'http://target');
    if (req.method === 'GET' && url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${marker}\n`);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/whoami') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${req.socket.remoteAddress}\n`);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/blob') {
      const bytes = Number(url.searchParams.get('bytes'));
      if (!Number.isInteger(bytes) || bytes < 0 || bytes > MAX_BLOB) {
        res.writeHead(400).end('bad bytes\n');
        return;
      }
      const body = blob(bytes, url.searchParams.get('seed') || 'seed');
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'x-sha256': sha256(body) });
      res.end(body);
      return;
    }
    if (req.method === 'POST' && url.pathname === '/sha256') {
      const h = crypto.createHash('sha256');
      let n = 0;
      req.on('data', (c) => { h.update(c); n += c.length; });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`${JSON.stringify({ bytes: n, sha256: h.digest('hex') })}\n`);
      });
      return;
    }
    res.writeHead(404).end('not found\n');
  });
}

/** The raw half-close target (see the file comment). */
function createHalfCloseServer() {
  return net.createServer({ allowHalfOpen: true }, (sock) => {
    const h = crypto.createHash('sha256');
    let n = 0;
    sock.on('data', (c) => { h.update(c); n += c.length; });
    sock.on('error', () => sock.destroy());
    sock.on('end', () => {
      // The client has shut down its write side; our direction must still work.
      sock.end(`${JSON.stringify({ bytes: n, sha256: h.digest('hex') })}\n`);
    });
  });
}

function listen(server, host, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

module.exports = { blob, sha256, createHttpTarget, createHalfCloseServer, listen };

if (require.main === module) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
  };
  const host = opt('host', '127.0.0.1');
  const marker = opt('marker', 'target-ok');
  (async () => {
    const httpPort = await listen(createHttpTarget(marker), host, Number(opt('port', '0')));
    const halfPort = await listen(createHalfCloseServer(), host, Number(opt('halfclose-port', '0')));
    process.stdout.write(`${JSON.stringify({ event: 'listening', http: httpPort, halfclose: halfPort })}\n`);
  })().catch((err) => {
    process.stderr.write(`target-server: ${err && err.message ? err.message : err}\n`);
    process.exit(1);
  });
  // Exit when the test harness goes away (it holds our stdin open).
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

'use strict';
/**
 * The load generator: a minimal SOCKS5 client on net.Socket (or a plain TCP
 * connect for the "direct" variant) and the measurement loops. Every loop is
 * bounded by a count AND a deadline; when the deadline hits, the loop stops and
 * the result says `partial: true`.
 *
 * A "variant" here is just { socks: {host, port} | null }; the target is
 * { host, port } of target-server.js.
 */
const net = require('node:net');
const { nowMs, percentile, median, sleep } = require('./util');

const TINY = 32; // bytes of one tiny request (echoed back)
const TINY_BUF = Buffer.alloc(TINY, 0x62);
const OP_TIMEOUT_MS = 30_000;

/** Read exactly `n` bytes that arrive on `sock` after this call, via a data handler; resolves the buffer. */
class Reader {
  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.waiter = null;
    this.onData = (c) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, c]) : c;
      this.check();
    };
    this.onEnd = () => this.fail(new Error('connection closed during SOCKS handshake'));
    sock.on('data', this.onData);
    sock.once('end', this.onEnd);
    sock.once('close', this.onEnd);
  }
  check() {
    if (!this.waiter) return;
    const need = this.waiter.need(this.buf);
    if (need === null) return;
    const w = this.waiter;
    this.waiter = null;
    const msg = this.buf.subarray(0, need);
    this.buf = this.buf.subarray(need);
    w.resolve(msg);
  }
  fail(err) {
    if (!this.waiter) { this.error = err; return; }
    const w = this.waiter;
    this.waiter = null;
    w.reject(err);
  }
  /** `need(buf)` returns the message length once complete, else null. */
  read(need) {
    return new Promise((resolve, reject) => {
      if (this.error) return reject(this.error);
      this.waiter = { need, resolve, reject };
      this.check();
    });
  }
  /** Detach, hand back leftover bytes to the socket. */
  detach() {
    this.sock.off('data', this.onData);
    this.sock.off('end', this.onEnd);
    this.sock.off('close', this.onEnd);
    this.sock.pause();
    if (this.buf.length) this.sock.unshift(this.buf);
  }
}

function socksRequest(host, port) {
  const ip = host.split('.').map(Number);
  return Buffer.from([5, 1, 0, 1, ...ip, port >> 8, port & 255]);
}

function replyLength(b) {
  if (b.length < 5) return null;
  const atyp = b[3];
  const len = atyp === 1 ? 10 : atyp === 4 ? 22 : atyp === 3 ? 7 + b[4] : 10;
  return b.length >= len ? len : null;
}

/**
 * Open one stream to `target` (through the SOCKS proxy if `socks` is set). Resolves
 * { sock, t: { connect, greeting, success } } with times in ms since the call.
 * pipelined=false behaves like curl: greeting, wait for the method, then CONNECT.
 */
function openStream(socks, target, { pipelined = false, timeoutMs = OP_TIMEOUT_MS } = {}) {
  const t0 = nowMs();
  return new Promise((resolve, reject) => {
    const dest = socks ?? target;
    const sock = net.connect({ host: dest.host, port: dest.port, noDelay: true });
    sock.setNoDelay(true);
    let done = false;
    const timer = setTimeout(() => finish(new Error(`open timed out after ${timeoutMs} ms`)), timeoutMs);
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) { sock.destroy(); reject(err); } else resolve(value);
    };
    sock.once('error', (e) => finish(e));
    sock.once('connect', async () => {
      const t = { connect: nowMs() - t0 };
      if (!socks) {
        t.greeting = t.success = t.connect;
        sock.removeAllListeners('error');
        sock.on('error', () => {});
        return finish(null, { sock, t });
      }
      const r = new Reader(sock);
      try {
        const req = socksRequest(target.host, target.port);
        if (pipelined) sock.write(Buffer.concat([Buffer.from([5, 1, 0]), req]));
        else sock.write(Buffer.from([5, 1, 0]));
        const sel = await r.read((b) => (b.length >= 2 ? 2 : null));
        t.greeting = nowMs() - t0;
        if (sel[0] !== 5 || sel[1] !== 0) throw new Error(`SOCKS method selection ${sel.toString('hex')}`);
        if (!pipelined) sock.write(req);
        const rep = await r.read(replyLength);
        t.success = nowMs() - t0;
        if (rep[1] !== 0) throw new Error(`SOCKS reply code ${rep[1]}`);
        r.detach();
        sock.removeAllListeners('error');
        sock.on('error', () => {});
        finish(null, { sock, t });
      } catch (err) {
        finish(err);
      }
    });
  });
}

/** An echo-mode stream: request() sends TINY bytes and resolves when they came back. */
class EchoStream {
  constructor(sock) {
    this.sock = sock;
    this.first = true;
    this.got = 0;
    this.want = 0;
    this.waiter = null;
    this.closed = false;
    sock.on('data', (c) => {
      this.got += c.length;
      if (this.waiter && this.got >= this.want) { const w = this.waiter; this.waiter = null; w.resolve(); }
    });
    const onGone = () => {
      this.closed = true;
      if (this.waiter) { const w = this.waiter; this.waiter = null; w.reject(new Error('stream closed')); }
    };
    sock.once('close', onGone);
    sock.once('end', onGone);
    sock.resume();
  }
  request(timeoutMs = OP_TIMEOUT_MS, mode = 'E') {
    if (this.closed) return Promise.reject(new Error('stream closed'));
    this.want += TINY;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiter = null; reject(new Error('request timed out')); }, timeoutMs);
      this.waiter = { resolve: () => { clearTimeout(timer); resolve(); }, reject: (e) => { clearTimeout(timer); reject(e); } };
      if (this.first) { this.first = false; this.sock.write(Buffer.concat([Buffer.from(`${mode}\n`), TINY_BUF])); } else this.sock.write(TINY_BUF);
      if (this.got >= this.want) this.waiter.resolve();
    });
  }
  close() { this.sock.destroy(); }
}

function pct(values) {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length ? Math.max(...values) : NaN,
    mean: values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN,
  };
}

/** Run `fn(i)` for i in 0..count-1 with at most `limit` in flight; stops starting new ones after deadline. */
async function pool(count, limit, deadline, fn) {
  let next = 0;
  let started = 0;
  const runners = [];
  for (let k = 0; k < Math.min(limit, count); k++) {
    runners.push((async () => {
      while (next < count && nowMs() < deadline) {
        const i = next++;
        started++;
        await fn(i);
      }
    })());
  }
  await Promise.all(runners);
  return started;
}

// ---------------------------------------------------------------------------
// Jobs. Each takes { socks, target, ...params, deadlineMs } and returns JSON.

/** `streams` parallel downloads of `bytes` each; throughput over the transfer (setup excluded). */
async function bulkDownload({ socks, target, streams, bytes, deadlineMs }) {
  const socksList = await Promise.all(Array.from({ length: streams }, () => openStream(socks, target)));
  const deadline = nowMs() + deadlineMs;
  const t0 = nowMs();
  let total = 0;
  let partial = false;
  const perStream = await Promise.all(socksList.map(({ sock }) => new Promise((resolve) => {
    let got = 0;
    let t;
    const finish = () => { clearTimeout(t); sock.destroy(); resolve({ got, ms: nowMs() - t0 }); };
    t = setTimeout(() => { partial = true; finish(); }, Math.max(0, deadline - nowMs()));
    sock.on('data', (c) => { got += c.length; total += c.length; if (got >= bytes) finish(); });
    sock.once('close', finish);
    sock.resume();
    sock.write(`G ${bytes}\n`);
  })));
  const ms = Math.max(...perStream.map((s) => s.ms));
  return { bytes: total, ms, MiBps: total / 1048576 / (ms / 1000), streams, partial: partial || total < streams * bytes };
}

/** `streams` parallel uploads of `bytes` each; done when the server acknowledged every byte. */
async function bulkUpload({ socks, target, streams, bytes, deadlineMs }) {
  const socksList = await Promise.all(Array.from({ length: streams }, () => openStream(socks, target)));
  const deadline = nowMs() + deadlineMs;
  const t0 = nowMs();
  let partial = false;
  const chunk = Buffer.alloc(256 * 1024, 0x63);
  let total = 0;
  const perStream = await Promise.all(socksList.map(({ sock }) => new Promise((resolve) => {
    let sent = 0;
    let acked = false;
    let t;
    const finish = () => { clearTimeout(t); sock.destroy(); resolve({ sent, ms: nowMs() - t0, acked }); };
    t = setTimeout(() => { partial = true; finish(); }, Math.max(0, deadline - nowMs()));
    sock.on('data', (c) => { if (c.toString('latin1').includes('OK')) { acked = true; finish(); } });
    sock.once('close', finish);
    sock.resume();
    sock.write(`P ${bytes}\n`);
    const pump = () => {
      while (sent < bytes && !sock.destroyed) {
        const n = Math.min(chunk.length, bytes - sent);
        sent += n;
        total += n;
        if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { sock.once('drain', pump); return; }
      }
    };
    pump();
  })));
  const ms = Math.max(...perStream.map((s) => s.ms));
  const acked = perStream.every((s) => s.acked);
  return { bytes: total, ms, MiBps: total / 1048576 / (ms / 1000), streams, partial: partial || !acked };
}

/** One new connection doing one tiny request; resolves with the ms from connect to reply. */
async function freshRequest(socks, target) {
  const s = nowMs();
  const { sock } = await openStream(socks, target);
  const e = new EchoStream(sock);
  await e.request();
  const ms = nowMs() - s;
  e.close();
  return ms;
}

/** `count` sequential new connections, each one tiny request; latency of connect→reply. */
async function connSetup({ socks, target, count, deadlineMs }) {
  const deadline = nowMs() + deadlineMs;
  const lat = [];
  let errors = 0;
  let firstError;
  const t0 = nowMs();
  for (let i = 0; i < count && nowMs() < deadline; i++) {
    try {
      lat.push(await freshRequest(socks, target));
    } catch (err) {
      errors++;
      firstError ??= String(err.message || err);
    }
  }
  const ms = nowMs() - t0;
  return { ...pct(lat), connPerSec: (lat.length / ms) * 1000, ms, errors, firstError, partial: lat.length + errors < count };
}

/** `conns` concurrent connections, each `reqs` sequential tiny requests. */
async function concurrency({ socks, target, conns, reqs, deadlineMs }) {
  const deadline = nowMs() + deadlineMs;
  const lat = [];
  const openLat = [];
  let errors = 0;
  let firstError;
  let done = 0;
  const t0 = nowMs();
  await Promise.all(Array.from({ length: conns }, async () => {
    let e;
    try {
      const s = nowMs();
      const { sock } = await openStream(socks, target);
      openLat.push(nowMs() - s);
      e = new EchoStream(sock);
      for (let r = 0; r < reqs && nowMs() < deadline; r++) {
        const q = nowMs();
        await e.request();
        lat.push(nowMs() - q);
        done++;
      }
    } catch (err) {
      errors++;
      firstError ??= String(err.message || err);
    } finally {
      e?.close();
    }
  }));
  const ms = nowMs() - t0;
  return { ms, requests: done, reqPerSec: (done / ms) * 1000, request: pct(lat), open: pct(openLat), errors, firstError, partial: done < conns * reqs };
}

/**
 * Open `count` streams (at most `inflight` opening at once), each answering one tiny
 * request, hold them all; `hold()` is awaited while held (the parent samples memory);
 * then one more request on every stream, concurrently, proves they are all alive.
 */
async function idleStreams({ socks, target, count, inflight = 64, deadlineMs }, hold) {
  const deadline = nowMs() + deadlineMs;
  const streams = [];
  let errors = 0;
  let firstError;
  const t0 = nowMs();
  await pool(count, inflight, deadline, async () => {
    try {
      const { sock } = await openStream(socks, target);
      const e = new EchoStream(sock);
      await e.request(OP_TIMEOUT_MS, 'H');
      streams.push(e);
    } catch (err) {
      errors++;
      firstError ??= String(err.message || err);
    }
  });
  const openMs = nowMs() - t0;
  await hold({ open: streams.length });
  const t1 = nowMs();
  let alive = 0;
  await Promise.all(streams.map((e) => e.request().then(() => { alive++; }, () => {})));
  const pingAllMs = nowMs() - t1;
  for (const e of streams) e.close();
  return { requested: count, open: streams.length, openMs, opensPerSec: (streams.length / openMs) * 1000, alive, pingAllMs, errors, firstError, partial: streams.length + errors < count };
}

/** Tiny requests for fairness: `persistent` on one connection, then `fresh` new connections, one request each. */
async function tinyLatency({ socks, target, persistent, fresh, deadlineMs }) {
  const deadline = nowMs() + deadlineMs;
  const lat = [];
  const freshLat = [];
  let errors = 0;
  let firstError;
  try {
    const { sock } = await openStream(socks, target);
    const e = new EchoStream(sock);
    for (let i = 0; i < persistent && nowMs() < deadline; i++) {
      const s = nowMs();
      await e.request();
      lat.push(nowMs() - s);
    }
    e.close();
  } catch (err) {
    errors++;
    firstError ??= String(err.message || err);
  }
  for (let i = 0; i < fresh && nowMs() < deadline; i++) {
    try {
      freshLat.push(await freshRequest(socks, target));
    } catch (err) {
      errors++;
      firstError ??= String(err.message || err);
    }
  }
  return { persistent: pct(lat), fresh: pct(freshLat), errors, firstError, partial: lat.length < persistent || freshLat.length < fresh };
}

/** An upload until stopped keeps at most this much unacknowledged by the target. */
const UPLOAD_IN_FLIGHT = 8 * 1024 * 1024;
/** How long a stopped upload may take to arrive in full (8 MiB at 10 Mbit/s: 6.7 s). */
const UPLOAD_DRAIN_MS = 30_000;

/** One long download (or `upload`) until stop() is awaited: bytes and MiB/s while it ran. */
async function bulkUntilStopped({ socks, target, upload = false }, hold) {
  const { sock } = await openStream(socks, target);
  let closed = false;
  sock.once('close', () => { closed = true; });
  sock.resume();
  const t0 = nowMs();
  if (!upload) {
    let got = 0;
    sock.on('data', (c) => { got += c.length; });
    sock.write(`G ${1024 ** 4}\n`);
    await hold({ started: true });
    const ms = nowMs() - t0;
    sock.destroy();
    return { bytes: got, ms, MiBps: got / 1048576 / (ms / 1000), closedEarly: closed };
  }
  // Upload: the target counts what arrived (a line per 64 KiB), so the rate is what
  // crossed the whole chain, taken over the last two thirds of the run (samples every
  // 100 ms). At most UPLOAD_IN_FLIGHT is unacknowledged, far more than any chain's
  // windows (the queue still forms at the slowest link), and once stopped the client
  // half-closes and waits until all of it has arrived: what loopback's socket buffers
  // held (several MiB) would otherwise still cross a slow link during the next run.
  sock.write('U\n');
  const chunk = Buffer.alloc(64 * 1024, 0x75);
  let sent = 0;
  let acked = 0;
  let stopped = false;
  let waiting = false;
  let text = '';
  let onAck = () => {};
  const pump = () => {
    waiting = false;
    while (!stopped && !sock.destroyed && sent - acked < UPLOAD_IN_FLIGHT) {
      sent += chunk.length;
      if (!sock.write(chunk)) { waiting = true; sock.once('drain', pump); return; }
    }
  };
  sock.on('data', (c) => {
    text += c.toString('latin1');
    const nl = text.lastIndexOf('\n');
    if (nl < 0) return;
    acked = Number(text.slice(text.lastIndexOf('\n', nl - 1) + 1, nl)) || acked;
    text = text.slice(nl + 1);
    if (!waiting) pump();
    onAck();
  });
  pump();
  const samples = [];
  const sampler = setInterval(() => samples.push([nowMs(), acked]), 100);
  await hold({ started: true });
  stopped = true;
  clearInterval(sampler);
  const end = [nowMs(), acked];
  sock.end(); // the target answers EOF with its final count (it acknowledges only per 64 KiB before)
  const drained = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), UPLOAD_DRAIN_MS);
    onAck = () => { if (acked >= sent) { clearTimeout(timer); resolve(true); } };
    sock.once('close', () => { clearTimeout(timer); resolve(acked >= sent); });
    onAck();
  });
  sock.destroy();
  const ms = end[0] - t0;
  const from = samples.find(([t]) => t - t0 >= ms / 3) ?? [t0, 0];
  return { bytes: end[1], ms, MiBps: (end[1] - from[1]) / 1048576 / ((end[0] - from[0]) / 1000), closedEarly: closed, drained };
}

/** `count` sequential new connections, curl-like SOCKS (greeting, then CONNECT), timing each step. */
async function wanTimings({ socks, target, count, gapMs = 20, deadlineMs }) {
  const deadline = nowMs() + deadlineMs;
  const greeting = [];
  const success = [];
  const firstByte = [];
  let errors = 0;
  let firstError;
  for (let i = 0; i < count && nowMs() < deadline; i++) {
    const s = nowMs();
    try {
      const { sock, t } = await openStream(socks, target);
      const fb = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no first byte')), OP_TIMEOUT_MS);
        sock.once('data', () => { clearTimeout(timer); resolve(nowMs() - s); });
        sock.once('close', () => reject(new Error('closed before first byte')));
        sock.resume();
        sock.write(Buffer.concat([Buffer.from('E\n'), TINY_BUF]));
      });
      greeting.push(t.greeting);
      success.push(t.success);
      firstByte.push(fb);
      sock.destroy();
    } catch (err) {
      errors++;
      firstError ??= String(err.message || err);
    }
    await new Promise((r) => setTimeout(r, gapMs));
  }
  return { greeting: pct(greeting), success: pct(success), firstByte: pct(firstByte), greetingMedian: median(greeting), errors, firstError, partial: firstByte.length < count };
}

/**
 * What a web page does over a WAN: `conns` new connections at once (curl-like SOCKS),
 * twice, `gapMs` apart. For each burst: when the last SOCKS success arrived and the
 * median one, in ms from the burst's start. The second burst shows a tunnel that
 * learned from the first (our channel pools grow after a burst).
 */
async function wanBurst({ socks, target, conns, gapMs = 500, deadlineMs }) {
  const deadline = nowMs() + deadlineMs;
  const bursts = [];
  let errors = 0;
  let firstError;
  for (let b = 0; b < 2 && nowMs() < deadline; b++) {
    if (b > 0) await sleep(gapMs);
    const t0 = nowMs();
    const results = await Promise.all(Array.from({ length: conns }, async () => {
      try {
        const { sock } = await openStream(socks, target);
        const at = nowMs() - t0;
        sock.destroy();
        return at;
      } catch (err) {
        errors++;
        firstError ??= String(err.message || err);
        return undefined;
      }
    }));
    const ok = results.filter((x) => x !== undefined);
    bursts.push({ all: ok.length === conns ? Math.max(...ok) : undefined, p50: median(ok), n: ok.length });
  }
  return { first: bursts[0], second: bursts[1], errors, firstError, partial: bursts.length < 2 || bursts.some((x) => x.n < conns) };
}

/**
 * `count` small keep-alive HTTP GETs, one at a time over one reused connection, to an
 * HTTP server started in this worker: `mode` 'http' through an HTTP proxy
 * (absolute-form requests), 'socks' through one SOCKS stream, 'direct' straight.
 * Returns requests/s and latency percentiles, and how many TCP connections the
 * target saw (1 means keep-alive held end to end).
 */
async function httpKeepAlive({ mode, proxy, count, deadlineMs }) {
  const http = require('node:http');
  let upstreamConns = 0;
  const server = http.createServer({ keepAlive: true }, (req, res) => res.end('ok\n'));
  server.on('connection', () => { upstreamConns++; });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const target = { host: '127.0.0.1', port: server.address().port };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  if (mode === 'socks') {
    agent.createConnection = (_opts, cb) => {
      openStream(proxy, target).then(({ sock }) => { sock.resume(); cb(null, sock); }, cb);
      return undefined;
    };
  }
  const get = () => new Promise((resolve, reject) => {
    const t0 = nowMs();
    const via = mode === 'http' ? { host: proxy.host, port: proxy.port, path: `http://${target.host}:${target.port}/x` } : { host: target.host, port: target.port, path: '/x' };
    const req = http.request({ ...via, agent, headers: { host: `${target.host}:${target.port}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(nowMs() - t0));
    });
    req.setTimeout(OP_TIMEOUT_MS, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
  const deadline = nowMs() + deadlineMs;
  const lat = [];
  let errors = 0;
  let firstError;
  await get().catch(() => {}); // warm-up: opens the connection
  const t0 = nowMs();
  while (lat.length + errors < count && nowMs() < deadline) {
    try { lat.push(await get()); } catch (err) { errors++; firstError ??= String(err.message); }
  }
  const secs = (nowMs() - t0) / 1000;
  agent.destroy();
  server.close();
  return { ...pct(lat), reqPerSec: lat.length / secs, errors, firstError, upstreamConns, partial: lat.length + errors < count };
}

/**
 * One download alone, then one beside an idle connection (a browser's keep-alive
 * connection: opened, used once, then quiet for `settleMs`), then two of half the
 * size at once, then one upload, through the same tunnel. Each starts `settleMs`
 * after any other traffic.
 */
async function downloadBesideIdle({ socks, target, bytes, settleMs, deadlineMs }) {
  await sleep(settleMs); // earlier traffic through the tunnel is as old
  const alone = await bulkDownload({ socks, target, streams: 1, bytes, deadlineMs });
  const idle = await openStream(socks, target);
  try {
    idle.sock.write('E\n');
    await sleep(settleMs);
    const beside = await bulkDownload({ socks, target, streams: 1, bytes, deadlineMs });
    idle.sock.destroy();
    // Two at once: each stream shares the device's connection with an active one.
    await sleep(settleMs);
    const two = await bulkDownload({ socks, target, streams: 2, bytes: bytes / 2, deadlineMs });
    await sleep(settleMs);
    const up = await bulkUpload({ socks, target, streams: 1, bytes, deadlineMs });
    return {
      aloneMiBps: alone.MiBps, besideMiBps: beside.MiBps, twoMiBps: two.MiBps, uploadMiBps: up.MiBps,
      partial: alone.partial || beside.partial || two.partial || up.partial,
    };
  } finally {
    idle.sock.destroy();
  }
}

module.exports = { openStream, EchoStream, bulkDownload, downloadBesideIdle, bulkUpload, connSetup, concurrency, idleStreams, tinyLatency, bulkUntilStopped, wanTimings, wanBurst, httpKeepAlive, pct, TINY };

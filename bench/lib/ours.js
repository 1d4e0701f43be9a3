'use strict';
/**
 * "Ours": `broker serve` + `broker-agent expose` + `broker-agent join`, the real
 * CLIs as users run them (their stdout/stderr go to log files in the temp dir).
 */
const fs = require('node:fs');
const path = require('node:path');
const procs = require('./procs');
const { sleep } = require('./util');
const { probe } = require('./openssh');

const ROOT = path.resolve(__dirname, '..', '..');
/** The code under test: run.js snapshots bin/ + dist/ into BENCH_CODE_DIR so a rebuild mid-run changes nothing. */
const codeDir = () => process.env.BENCH_CODE_DIR || ROOT;
const brokerBin = () => path.join(codeDir(), 'bin', 'broker');
const agentBin = () => path.join(codeDir(), 'bin', 'broker-agent');

/** Poll a file of JSON lines until one matches pred. */
async function waitForFileJson(file, pred, timeoutMs, what, child) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    let text = '';
    try { text = fs.readFileSync(file, 'utf8'); } catch { /* not yet */ }
    for (const line of text.split('\n')) {
      let obj;
      try { obj = JSON.parse(line); } catch { continue; }
      if (pred(obj)) return obj;
    }
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready; see ${file} and ${file.replace(/\.out$/, '.err')}`);
    }
    if (Date.now() > until) throw new Error(`${what}: not ready within ${timeoutMs} ms; see ${file}`);
    await sleep(50);
  }
}

/** Spawn node `cmd`, stderr (and stdout, unless `pipeStdout`: then child.stdout) to files in `dir`. */
function spawnLogged(cmd, args, dir, name, nodeArgs = [], env = {}, { pipeStdout = false } = {}) {
  const out = path.join(dir, `${name}.out`);
  const err = path.join(dir, `${name}.err`);
  const o = fs.openSync(out, 'a');
  const e = fs.openSync(err, 'a');
  const { spawn } = require('node:child_process');
  const child = spawn(process.execPath, [...nodeArgs, cmd, ...args], { stdio: ['ignore', pipeStdout ? 'pipe' : o, e], env: { ...process.env, NO_COLOR: '1', ...env } });
  fs.closeSync(o);
  fs.closeSync(e);
  procs.track(child, name);
  return { child, out, err };
}

/** Start a broker; returns { child, address, fingerprint }. */
async function startBroker(dir, { name = 'broker', logLevel = 'info', nodeArgs = [], env = {} } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const b = spawnLogged(brokerBin(), ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, `${name}-data`), '--log-format', 'json', '--log-level', logLevel], dir, name, nodeArgs, env);
  const l = await waitForFileJson(b.out, (o) => o.event === 'listening', 20_000, name, b.child);
  return { child: b.child, address: l.ssh, fingerprint: l.fingerprint, port: Number(/:(\d+)$/.exec(l.ssh)[1]) };
}

function clientFlags(broker, dir, address) {
  return ['--broker', address ?? broker.address, '--fingerprint', broker.fingerprint, '--known-brokers', path.join(dir, 'known_brokers'), '--json'];
}

/** Start `broker-agent expose`; resolves { child, code }. `address` overrides the broker address (relay). */
async function startExpose(broker, dir, { name = 'expose', address, allow = ['127.0.0.1'], nodeArgs = [], env = {} } = {}) {
  const args = ['expose', ...clientFlags(broker, dir, address)];
  for (const a of allow) args.push('--allow', a);
  const x = spawnLogged(agentBin(), args, dir, name, nodeArgs, env);
  const ev = await waitForFileJson(x.out, (o) => o.event === 'session' && typeof o.code === 'string', 30_000, name, x.child);
  return { child: x.child, code: ev.code };
}

/**
 * Start a stock OpenSSH device (`ssh -R 0 expose@broker -- --allow ...`) instead of
 * `broker-agent expose`; resolves { child, code }. `address` overrides the broker address.
 */
async function startStockExpose(broker, dir, { name = 'expose-stock', address, allow = ['127.0.0.1'] } = {}) {
  const { execFileSync, spawn } = require('node:child_process');
  const key = path.join(dir, `${name}_ed25519`);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key], { stdio: 'ignore' });
  const [host, port] = /^(.*):(\d+)$/.exec(address ?? broker.address).slice(1);
  const out = path.join(dir, `${name}.out`);
  const o = fs.openSync(out, 'a');
  const e = fs.openSync(path.join(dir, `${name}.err`), 'a');
  const args = ['-i', key, '-p', port, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
    '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR', '-R', '0', '-T', `expose@${host.replace(/^\[|\]$/g, '')}`, '--'];
  for (const a of allow) args.push('--allow', a);
  const child = spawn('ssh', args, { stdio: ['pipe', o, e] }); // stdin stays open: closing it ends the session
  fs.closeSync(o);
  fs.closeSync(e);
  procs.track(child, name);
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(50)) {
    const m = /session code:\s+(\S+)/.exec(fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '');
    if (m) return { child, code: m[1] };
    if (child.exitCode !== null) break;
  }
  throw new Error(`${name}: no session code from the stock ssh device (see ${out})`);
}

/** Arguments of `broker-agent join CODE` (SOCKS on `socks`, default any free port; HTTP proxy only if `http`). */
function joinArgs(broker, dir, code, { address, socks = '127.0.0.1:0', http = false, extraArgs = [] } = {}) {
  return ['join', code, ...clientFlags(broker, dir, address), '--socks', socks, '--http', http ? '127.0.0.1:0' : 'off', ...extraArgs];
}

/** `HOST:PORT` as { host, port }. */
function parseHostPort(text) {
  const m = /^(.*):(\d+)$/.exec(text);
  return { host: m[1], port: Number(m[2]) };
}

/** Start `broker-agent join CODE`; resolves { child, socks: {host, port}, http?: {host, port} }. */
async function startJoin(broker, dir, code, { name = 'join', address, nodeArgs = [], env = {}, http = false, extraArgs = [] } = {}) {
  const j = spawnLogged(agentBin(), joinArgs(broker, dir, code, { address, http, extraArgs }), dir, name, nodeArgs, env);
  const ev = await waitForFileJson(j.out, (o) => o.event === 'ready', 30_000, name, j.child);
  return { child: j.child, socks: parseHostPort(ev.socks), http: ev.http ? parseHostPort(ev.http) : undefined };
}

/**
 * A whole chain: broker (given or new) + one expose (or a stock `ssh -R` device) + `helpers`
 * joins; `env` is added to each one's environment, `joinArgs` to each join's arguments.
 */
async function startChain(dir, target, { broker, helpers = 1, helperAddress, deviceAddress, tag = '', nodeArgs = () => [], env = {}, stockDevice = false, joinArgs: extraJoinArgs = [], name = 'ours' } = {}) {
  const ownBroker = !broker;
  const bin = agentBin(); // this chain's build (ab.js runs several, one BENCH_CODE_DIR after another)
  if (!broker) broker = await startBroker(dir, { name: `broker${tag}`, nodeArgs: nodeArgs('broker'), env });
  const expose = stockDevice
    ? await startStockExpose(broker, dir, { name: `expose${tag}`, address: deviceAddress })
    : await startExpose(broker, dir, { name: `expose${tag}`, address: deviceAddress, nodeArgs: nodeArgs('agent'), env });
  const joins = [];
  for (let i = 0; i < helpers; i++) joins.push(await startJoin(broker, dir, expose.code, { name: `join${tag}-${i}`, address: helperAddress, nodeArgs: nodeArgs(`helper${i}`), env, extraArgs: extraJoinArgs }));
  for (const j of joins) await probe(j.socks, target);
  return {
    name,
    socks: joins[0].socks,
    socksB: joins[1] && joins[1].socks,
    broker,
    pids: () => [broker.child.pid, expose.child.pid, ...joins.map((j) => j.child.pid)],
    roles: () => ({ broker: broker.child.pid, agent: expose.child.pid, helper: joins[0].child.pid }),
    /**
     * Spawn one more `broker-agent join` with SOCKS on `port` (0: any free port) (the
     * `start` scenarios); returns its child, with child.stdout if `pipeStdout`.
     */
    newHelper: (port, { pipeStdout = false } = {}) => spawnLogged(bin, joinArgs(broker, dir, expose.code, { address: helperAddress, socks: `127.0.0.1:${port}`, extraArgs: extraJoinArgs }), dir, `join${tag}-new-${port}-${Date.now()}`, nodeArgs('helper-new'), env, { pipeStdout }).child,
    close: async () => {
      // generous grace: with --cpu-prof the profile is written on the way out
      await Promise.all([...joins.map((j) => j.child), expose.child].map((c) => procs.stop(c, 5000)));
      if (ownBroker) await procs.stop(broker.child, 5000);
    },
  };
}

module.exports = { startBroker, startExpose, startStockExpose, startJoin, startChain, waitForFileJson, joinArgs, parseHostPort, ROOT };

'use strict';
/**
 * The OpenSSH baseline: a private sshd on a high loopback port (own config, own
 * host key, own authorized_keys, nothing shared with the system sshd), and the
 * chain the issue describes:
 *
 *   device:  ssh -N -R 127.0.0.1:P1 root@sshd        (remote dynamic forwarding: SOCKS on P1)
 *   helper:  ssh -N -L 127.0.0.1:P2:127.0.0.1:P1 root@sshd
 *   client:  SOCKS5 to 127.0.0.1:P2
 *
 * Two flavours: `-N` (no session: OpenSSH leaves Nagle on) and `-tt … sleep`
 * (a pty session: both ends switch to interactive mode and set TCP_NODELAY).
 * Both hops use AES-128-GCM (`-c aes128-gcm@openssh.com`).
 */
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const procs = require('./procs');
const { freePort, waitForPort, sleep, processTree } = require('./util');
const { openStream, EchoStream } = require('./client');

const SSHD = '/usr/sbin/sshd';
const CIPHER = 'aes128-gcm@openssh.com';

/** Make sure /usr/sbin/sshd exists; install openssh-server with apt-get if we can. */
function ensureSshd(log) {
  if (fs.existsSync(SSHD)) return;
  log('sshd not found: installing openssh-server with apt-get (root needed)...');
  const run = (args) => execFileSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  try {
    try { run(['install', '-y', 'openssh-server']); } catch { run(['update']); run(['install', '-y', 'openssh-server']); }
  } catch (err) {
    throw new Error(`cannot install openssh-server (${err.message}); install it yourself (apt-get install -y openssh-server) or run with --skip-openssh`);
  }
  if (!fs.existsSync(SSHD)) throw new Error('openssh-server installed but /usr/sbin/sshd is still missing');
}

function keygen(file, comment) {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { stdio: 'ignore' });
}

/** Start the private sshd. Returns { port, key, child, close }. */
async function startSshd(dir, { log }) {
  ensureSshd(log);
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = path.join(dir, 'host_ed25519');
  const userKey = path.join(dir, 'id_ed25519');
  keygen(hostKey, 'bench-sshd-host');
  keygen(userKey, 'bench-client');
  fs.copyFileSync(`${userKey}.pub`, path.join(dir, 'authorized_keys'));
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  fs.writeFileSync(config, [
    `ListenAddress 127.0.0.1:${port}`,
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    'UsePAM no',
    'StrictModes no',
    'PermitRootLogin yes',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'GatewayPorts no',
    'AllowTcpForwarding yes',
    'PermitListen any',
    'PermitOpen any',
    'PermitTTY yes',
    'X11Forwarding no',
    'PrintMotd no',
    'PrintLastLog no',
    'UseDNS no',
    'ClientAliveInterval 0',
    // the memory scenario connects a few hundred devices
    'MaxStartups 400:30:800',
    'LogLevel ERROR',
    '',
  ].join('\n'));
  execFileSync(SSHD, ['-t', '-f', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  const child = procs.start(SSHD, ['-D', '-e', '-f', config], { name: 'sshd', logFile: path.join(dir, 'sshd.log') });
  await waitForPort(port);
  return {
    port, key: userKey, child, dir,
    close: () => procs.stop(child),
  };
}

function sshArgs(sshd, { port, variant }) {
  return [
    '-F', '/dev/null',
    '-p', String(port ?? sshd.port),
    '-i', sshd.key,
    '-c', CIPHER,
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes', '-o', 'ExitOnForwardFailure=yes', '-o', 'Compression=no',
    '-o', 'ControlMaster=no', '-o', 'ControlPath=none', '-o', 'LogLevel=ERROR',
    ...(variant === 'tt' ? ['-tt'] : ['-N']),
  ];
}

function sshTail(variant) {
  return variant === 'tt' ? ['root@127.0.0.1', 'sleep', '1000000'] : ['root@127.0.0.1'];
}

/** Start a device (`ssh -R 127.0.0.1:P1`) ; port = where to reach sshd (a relay in the WAN scenario). */
async function startDevice(sshd, { variant, port, name }) {
  const p1 = await freePort();
  const child = procs.start('ssh', [...sshArgs(sshd, { port, variant }), '-R', `127.0.0.1:${p1}`, ...sshTail(variant)], {
    name: name ?? `ssh-R(${variant})`, logFile: path.join(sshd.dir, `device-${variant}-${p1}.log`), stdinPipe: variant === 'tt',
  });
  await waitForPort(p1, '127.0.0.1', 20_000);
  return { p1, child };
}

/** Spawn a helper (`ssh -L 127.0.0.1:P2:127.0.0.1:P1`); returns its child process. */
function spawnHelper(sshd, { variant, port, p1, p2, name }) {
  return procs.start('ssh', [...sshArgs(sshd, { port, variant }), '-L', `127.0.0.1:${p2}:127.0.0.1:${p1}`, ...sshTail(variant)], {
    name: name ?? `ssh-L(${variant})`, logFile: path.join(sshd.dir, `helper-${variant}-${p2}.log`), stdinPipe: variant === 'tt',
  });
}

/** Start a helper and wait until its port listens. */
async function startHelper(sshd, { variant, port, p1, name }) {
  const p2 = await freePort();
  const child = spawnHelper(sshd, { variant, port, p1, p2, name });
  await waitForPort(p2, '127.0.0.1', 20_000);
  return { p2, child };
}

/** One tiny request through socks to target, retried every `intervalMs` until it works (the chain is up). */
async function probe(socks, target, timeoutMs = 20_000, intervalMs = 200) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    try {
      const { sock } = await openStream(socks, target, { timeoutMs: 5000 });
      const e = new EchoStream(sock);
      await e.request(5000);
      e.close();
      return;
    } catch (err) {
      last = err;
      await sleep(intervalMs);
    }
  }
  throw new Error(`chain through SOCKS ${socks.port} does not work: ${last && last.message}`);
}

/**
 * A whole OpenSSH chain: one device, `helpers` helpers. `helperPort`/`devicePort`
 * are where each hop reaches sshd (default: sshd itself).
 */
async function startChain(sshd, target, { variant, helpers = 1, helperPort, devicePort }) {
  const device = await startDevice(sshd, { variant, port: devicePort });
  const hs = [];
  for (let i = 0; i < helpers; i++) hs.push(await startHelper(sshd, { variant, port: helperPort, p1: device.p1 }));
  const socks = hs.map((h) => ({ host: '127.0.0.1', port: h.p2 }));
  for (const s of socks) await probe(s, target);
  return {
    name: variant === 'tt' ? 'openssh-tt' : 'openssh-N',
    socks: socks[0],
    socksB: socks[1],
    /** Processes that make up the tunnel (device ssh, helper ssh, sshd and its children). */
    pids: () => [device.child.pid, ...hs.map((h) => h.child.pid), ...processTree(sshd.child.pid)],
    devicePid: () => device.child.pid,
    helperPid: () => hs[0].child.pid,
    /** Spawn one more helper whose local port is `p2` (the `start` scenario); returns its child. */
    newHelper: (p2) => spawnHelper(sshd, { variant, port: helperPort, p1: device.p1, p2, name: `ssh-L(${variant}, new)` }),
    close: async () => { await Promise.all([device.child, ...hs.map((h) => h.child)].map((c) => procs.stop(c))); },
  };
}

module.exports = { startSshd, startChain, startDevice, startHelper, spawnHelper, probe, ensureSshd, CIPHER };

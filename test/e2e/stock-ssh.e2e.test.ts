/**
 * Zero-install peers: the stock OpenSSH client as a helper (`ssh -W`, `ssh -D`)
 * and as an agent (`ssh -R 0 expose@broker`, OpenSSH's remote dynamic forwarding).
 * These tests fail, not skip, when openssh-client is missing (CI installs it).
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  closedPort, connectTcp, curl, curlSocks, requireOpenSsh, sha256, socksConnect, spawnProc, sshBaseArgs, sshKeygen, startBroker, startExpose, startJoin,
  startTargets, targetLib, tempDir, until, type BrokerProc, type ExposeProc, type JsonProc, type Targets,
} from './harness';

let targets: Targets;
let broker: BrokerProc;
let expose: ExposeProc;
let key: string;

beforeAll(async () => {
  await requireOpenSsh();
  targets = await startTargets();
  broker = await startBroker();
  key = await sshKeygen();
  expose = await startExpose(broker, ['--allow', `127.0.0.1:${targets.httpPort}`, '--allow', `127.0.0.1:${targets.halfClosePort}`]);
}, 60_000);

/** `ssh ... -W HOST:PORT CODE@broker` with stdin as a pipe. */
function sshW(dest: string): JsonProc {
  return spawnProc('ssh -W', 'ssh', [...sshBaseArgs(key, broker.port), '-W', dest, `${expose.code}@127.0.0.1`], { stdin: true });
}

describe('stock OpenSSH as a helper', () => {
  test('ssh -W to an allowed destination: the HTTP response arrives', async () => {
    const ssh = sshW(`127.0.0.1:${targets.httpPort}`);
    ssh.child.stdin!.write('GET / HTTP/1.0\r\nHost: target\r\n\r\n');
    // stdin stays open until the answer is in, so the request is never cut short.
    await ssh.waitForText(new RegExp(targets.marker), 15_000, 'stdout');
    ssh.child.stdin!.end();
    expect(await ssh.waitExit(10_000)).toBe(0);
    expect(ssh.stdout).toMatch(/^HTTP\/1\.[01] 200/);
  });

  test('ssh -W half-close: stdin EOF reaches the server, its answer still comes back', async () => {
    const ssh = sshW(`127.0.0.1:${targets.halfClosePort}`);
    const payload = targetLib.blob(256 * 1024, 'ssh-half').toString('base64');
    ssh.child.stdin!.end(payload);
    expect(await ssh.waitExit(15_000)).toBe(0);
    expect(JSON.parse(ssh.stdout)).toEqual({ bytes: Buffer.byteLength(payload), sha256: sha256(payload) });
  });

  test('ssh -W to a forbidden destination: "administratively prohibited: BRK_POLICY_DENIED"', async () => {
    const forbidden = await closedPort();
    const ssh = sshW(`127.0.0.1:${forbidden}`);
    ssh.child.stdin!.end();
    expect(await ssh.waitExit(15_000)).toBe(255);
    expect(ssh.stderr).toMatch(/open failed: administratively prohibited: BRK_POLICY_DENIED/);
    expect(ssh.stdout).toBe('');
  });

  test('ssh -N -D: curl --socks5-hostname through the stock client reaches the target', async () => {
    let socksPort = 0;
    let ssh: JsonProc | undefined;
    // -D needs a fixed port: take a free one; retry if another process grabbed it meanwhile.
    for (let attempt = 0; attempt < 3 && !ssh; attempt++) {
      socksPort = await closedPort();
      const p = spawnProc('ssh -D', 'ssh', [...sshBaseArgs(key, broker.port), '-o', 'ExitOnForwardFailure=yes', '-N', '-D', `127.0.0.1:${socksPort}`, `${expose.code}@127.0.0.1`]);
      const up = await until(async () => {
        if (!p.running) return 'exited';
        return connectTcp('127.0.0.1', socksPort, 1000).then((s) => { s.destroy(); return 'listening'; }, () => undefined);
      }, 15_000, 'ssh -D to listen');
      if (up === 'listening') ssh = p;
    }
    expect(ssh).toBeDefined();
    const ok = await curlSocks(`127.0.0.1:${socksPort}`, `http://127.0.0.1:${targets.httpPort}/`);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim()).toBe(targets.marker);
    // A forbidden destination fails (OpenSSH's own SOCKS server only has "general failure").
    const denied = await curlSocks(`127.0.0.1:${socksPort}`, `http://127.0.0.1:${await closedPort()}/`);
    expect(denied.code).not.toBe(0);
    expect(ssh!.running).toBe(true);
  });
});

describe('stock OpenSSH as the agent (ssh -R 0 expose@broker)', () => {
  test('prints a session code; a native helper joins it and fetches the target', async () => {
    const agent = spawnProc('ssh -R', 'ssh', [
      ...sshBaseArgs(key, broker.port), '-o', 'ExitOnForwardFailure=yes', '-R', '0', '-T',
      `expose@127.0.0.1`, '--', '--allow', `127.0.0.1:${targets.httpPort}`, '--label', 'stock-agent',
    ], { stdin: true }); // stdin stays open: closing it would end the session
    const m = await agent.waitForText(/session code:\s+([0-9a-z]{7}-[0-9a-z]{7}-[0-9a-z]{7})/, 15_000, 'stdout');
    const code = m[1]!;
    const join = await startJoin(broker, code);
    expect((join.ready.descriptor as { label?: string }).label).toBe('stock-agent');
    const r = await curlSocks(join.socks, `http://127.0.0.1:${targets.httpPort}/`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(targets.marker);
    // The stock agent enforces nothing itself; the broker does: other ports are refused early.
    const denied = await curlSocks(join.socks, `http://127.0.0.1:${targets.halfClosePort}/`);
    expect(denied.code).toBe(97);
    expect(denied.stderr).toMatch(/\(2\)/);
    // The agent's terminal is told that a helper joined.
    await agent.waitForText(/helper #\d+ joined/, 5000, 'stdout');
  });

  test('an upload through it arrives intact while another stream is light (the broker holds the upload back then)', async () => {
    const agent = spawnProc('ssh -R', 'ssh', [
      ...sshBaseArgs(key, broker.port), '-o', 'ExitOnForwardFailure=yes', '-R', '0', '-T',
      `expose@127.0.0.1`, '--', '--allow', `127.0.0.1:${targets.httpPort}`,
    ], { stdin: true });
    const code = (await agent.waitForText(/session code:\s+([0-9a-z]{7}-[0-9a-z]{7}-[0-9a-z]{7})/, 15_000, 'stdout'))[1]!;
    const join = await startJoin(broker, code);
    // A light stream: a small keep-alive request every 10 ms, for as long as the upload runs.
    const light = await socksConnect(join.socks, '127.0.0.1', targets.httpPort);
    expect(light.rep).toBe(0x00);
    let answers = 0;
    light.socket.on('data', (d: Buffer) => { answers += d.toString('latin1').split('HTTP/1.1 200').length - 1; });
    const ask = () => light.socket.write(`GET / HTTP/1.1\r\nHost: t\r\n\r\n`);
    ask();
    const clicks = setInterval(ask, 10);
    try {
      const file = path.join(tempDir('rab-upload-'), 'body');
      const body = targetLib.blob(24 * 1024 * 1024, 'stock-upload');
      fs.writeFileSync(file, body);
      const r = await curl(['--socks5-hostname', join.socks, '--data-binary', `@${file}`, '-H', 'Expect:', `http://127.0.0.1:${targets.httpPort}/sha256`], { maxTimeSec: 60 });
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)).toEqual({ bytes: body.length, sha256: sha256(body) });
    } finally {
      clearInterval(clicks);
      light.socket.destroy();
    }
    expect(answers).toBeGreaterThan(1); // the light stream was answered meanwhile
    agent.child.stdin!.end();
  }, 90_000);

  test('an invalid flag on the stock command line is refused with a message naming it', async () => {
    const agent = spawnProc('ssh -R', 'ssh', [...sshBaseArgs(key, broker.port), '-R', '0', '-T', 'expose@127.0.0.1', '--', '--allow', '10.0.0.0/33'], { stdin: true });
    await agent.waitForText(/error BRK_BAD_OPTION: .*10\.0\.0\.0\/33/, 15_000, 'stdout');
    agent.child.stdin!.end();
    expect(await agent.waitExit(10_000)).not.toBe(0);
  });
});

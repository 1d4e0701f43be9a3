import crypto from 'node:crypto';
import { markingMode } from '../../src/transport/marking-mode';
import { applyProcessTuning, appliedProcessTuning, applyRunningTuning, ATOMIC_MARKING, MALLOC_THRESHOLDS, RUNNING_FLAGS, V8_FLAGS, WARMING_UP, warmingUp } from '../../src/transport/process-tuning';
import { isWarm } from '../../src/transport/warm-up';
import { usesGlibc } from '../../src/transport/malloc-thresholds';

test('BROKER_PROCESS_TUNING=0 applies nothing, and nothing once running', () => {
  const before = crypto.randomFillSync;
  expect(applyProcessTuning({ BROKER_PROCESS_TUNING: '0' })).toEqual([]);
  expect(applyRunningTuning()).toEqual([]);
  expect(warmingUp()).toBe(false);
  expect(crypto.randomFillSync).toBe(before);
});

test('by default: the padding pool and the GC settings at start, the compiler settings once running; applying twice is harmless', () => {
  const atStart = ['random-pool', ...V8_FLAGS, ATOMIC_MARKING, ...(process.platform === 'linux' && usesGlibc() ? [MALLOC_THRESHOLDS] : [])];
  expect(applyProcessTuning({})).toEqual(atStart);
  expect(RUNNING_FLAGS.some((f) => atStart.includes(f))).toBe(false);
  expect(warmingUp()).toBe(false); // the warm-up budget waits for the program to be up
  // This test process may have used its warm-up CPU already: then it gets no warm-up budget.
  const warmBefore = isWarm(process.cpuUsage());
  const running = applyRunningTuning();
  if (warmBefore === isWarm(process.cpuUsage())) expect(warmingUp()).toBe(!warmBefore);
  const all = [...atStart, ...RUNNING_FLAGS, ...(warmingUp() ? [WARMING_UP] : [])];
  expect(running).toEqual(all);
  expect(appliedProcessTuning()).toEqual(all);
  expect(['atomic', 'incremental']).toContain(markingMode()); // which one depends on the test runner's heap
  const pooled = crypto.randomFillSync;
  expect(applyProcessTuning({})).toEqual(all);
  expect(applyRunningTuning()).toEqual(all);
  expect(crypto.randomFillSync).toBe(pooled);
  // buffers still allocate and die normally under the flag
  let total = 0;
  for (let i = 0; i < 2000; i++) total += Buffer.allocUnsafe(32 * 1024).length;
  expect(total).toBe(2000 * 32 * 1024);
});

test('ssh2 loads after the padding pool: its packets take their padding from the pool', async () => {
  // ssh2 binds crypto.randomFillSync when its packet code loads; a module that loads ssh2
  // at import time (as a window-size constant once did) leaves the pool unused.
  const saved = crypto.randomFillSync;
  const smallFills: number[] = [];
  const spy = function randomFillSync(...args: unknown[]) {
    if (typeof args[2] === 'number' && args[2] < 1024) smallFills.push(args[2]);
    return (saved as (...a: unknown[]) => unknown).apply(crypto, args);
  } as typeof crypto.randomFillSync;
  crypto.randomFillSync = spy;
  let ssh2!: typeof import('ssh2');
  let tuning!: typeof import('../../src/transport/process-tuning');
  try {
    jest.isolateModules(() => {
      tuning = require('../../src/transport/process-tuning');
      tuning.installLibraryTuning();
      ssh2 = require('ssh2');
    });
  } finally {
    crypto.randomFillSync = saved;
  }
  // A real handshake and a few packets, in memory.
  const hostKey = ssh2.utils.generateKeyPairSync('ed25519').private;
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (c) => {
    c.on('authentication', (ctx) => ctx.accept());
    c.on('ready', () => c.on('session', (accept) => accept().on('exec', (acc) => acc().end('done'))));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new ssh2.Client();
  try {
    const out = await new Promise<string>((resolve, reject) => {
      client.once('error', reject);
      client.once('ready', () => client.exec('x', (err, ch) => {
        if (err) return reject(err);
        let text = '';
        ch.on('data', (d: Buffer) => { text += d.toString(); });
        ch.once('close', () => resolve(text));
      }));
      client.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, username: 'u', password: 'p' });
    });
    expect(out).toBe('done');
  } finally {
    client.end();
    await new Promise<void>((r) => server.close(() => r()));
  }
  expect(smallFills).toEqual([]);
});

/**
 * glibc keeps freed heap mapped once our process tuning has run (src/transport/malloc-thresholds.ts),
 * measured in real processes: page faults while buffers are allocated, touched and freed in rounds.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './harness';
import { dynamicThresholdMax, raiseMallocThresholds, thresholdBlockBytes } from '../../src/transport/malloc-thresholds';

/**
 * A child process that applies the tuning (the bins' first line) unless told not to, then
 * allocates 64 buffers of 256 KiB (above glibc's default 128 KiB mmap threshold), writes
 * them and frees them with a GC, five times after a first round; prints its page faults per round.
 */
const CHILD = `
const fs = require('node:fs');
const faults = () => Number(fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);
require(${JSON.stringify(path.join(REPO, 'dist', 'transport', 'process-tuning.js'))}).applyProcessTuning();
gc();
function round() {
  let bufs = [];
  for (let i = 0; i < 64; i++) bufs.push(Buffer.allocUnsafeSlow(256 * 1024).fill(1));
  bufs = null;
  gc();
}
round();
const before = faults();
for (let r = 0; r < 5; r++) round();
process.stdout.write(String((faults() - before) / 5));
`;

async function faultsPerRound(tuning: '0' | '1'): Promise<number> {
  // The flag frees dead buffers inside the GC, so the count cannot race a background sweep.
  const args = ['--expose-gc', '--no-concurrent-array-buffer-sweeping', '-e', CHILD];
  const { stdout } = await promisify(execFile)(process.execPath, args, { timeout: 30_000, env: { ...process.env, BROKER_PROCESS_TUNING: tuning } });
  return Number(stdout);
}

test('the block freed at startup is just under glibc\'s maximum dynamic threshold', () => {
  expect(dynamicThresholdMax('x64')).toBe(32 * 1024 * 1024);
  expect(dynamicThresholdMax('arm64')).toBe(32 * 1024 * 1024);
  expect(dynamicThresholdMax('arm')).toBe(16 * 1024 * 1024);
  expect(dynamicThresholdMax('ia32')).toBe(16 * 1024 * 1024);
  for (const arch of ['x64', 'arm']) {
    expect(thresholdBlockBytes(arch)).toBeLessThan(dynamicThresholdMax(arch) - 4096);
    expect(thresholdBlockBytes(arch)).toBeGreaterThan(dynamicThresholdMax(arch) / 2);
  }
  // Only Linux (glibc); elsewhere nothing is allocated.
  expect(raiseMallocThresholds('darwin')).toBe(false);
  expect(raiseMallocThresholds('win32')).toBe(false);
  expect(raiseMallocThresholds('linux')).toBe(true);
  // An allocation that fails (as under a strict overcommit limit) leaves the process running without it.
  expect(raiseMallocThresholds('linux', Number.MAX_SAFE_INTEGER)).toBe(false);
});

test('with the process tuning, freed buffers stay mapped: reusing them takes almost no page faults', async () => {
  const untuned = await faultsPerRound('0');
  const tuned = await faultsPerRound('1');
  // 64 x 256 KiB written is 4,096 pages. Without the tuning glibc gives a fifth of them back
  // every round, even after raising its thresholds by itself to 256 KiB (this machine: 833
  // page faults per round, 34 with the tuning).
  expect(untuned).toBeGreaterThan(400);
  expect(tuned).toBeLessThan(untuned / 5);
}, 60_000);

import crypto from 'node:crypto';
import { markingMode } from '../../src/transport/marking-mode';
import { applyProcessTuning, appliedProcessTuning, ATOMIC_MARKING, V8_FLAGS } from '../../src/transport/process-tuning';

test('BROKER_PROCESS_TUNING=0 applies nothing', () => {
  const before = crypto.randomFillSync;
  expect(applyProcessTuning({ BROKER_PROCESS_TUNING: '0' })).toEqual([]);
  expect(crypto.randomFillSync).toBe(before);
});

test('by default: the padding pool and the GC settings, and applying twice is harmless', () => {
  const all = ['random-pool', ...V8_FLAGS, ATOMIC_MARKING];
  expect(applyProcessTuning({})).toEqual(all);
  expect(appliedProcessTuning()).toEqual(all);
  expect(['atomic', 'incremental']).toContain(markingMode()); // which one depends on the test runner's heap
  const pooled = crypto.randomFillSync;
  expect(applyProcessTuning({})).toEqual(all);
  expect(crypto.randomFillSync).toBe(pooled);
  // buffers still allocate and die normally under the flag
  let total = 0;
  for (let i = 0; i < 2000; i++) total += Buffer.allocUnsafe(32 * 1024).length;
  expect(total).toBe(2000 * 32 * 1024);
});

import crypto from 'node:crypto';
import { applyProcessTuning, appliedProcessTuning, GC_FLAGS } from '../../src/transport/process-tuning';

test('BROKER_PROCESS_TUNING=0 applies nothing', () => {
  const before = crypto.randomFillSync;
  expect(applyProcessTuning({ BROKER_PROCESS_TUNING: '0' })).toEqual([]);
  expect(crypto.randomFillSync).toBe(before);
});

test('by default: the padding pool and the GC flags, and applying twice is harmless', () => {
  expect(applyProcessTuning({})).toEqual(['random-pool', ...GC_FLAGS]);
  expect(appliedProcessTuning()).toEqual(['random-pool', ...GC_FLAGS]);
  const pooled = crypto.randomFillSync;
  expect(applyProcessTuning({})).toEqual(['random-pool', ...GC_FLAGS]);
  expect(crypto.randomFillSync).toBe(pooled);
  // buffers still allocate and die normally under the flag
  let total = 0;
  for (let i = 0; i < 2000; i++) total += Buffer.allocUnsafe(32 * 1024).length;
  expect(total).toBe(2000 * 32 * 1024);
});

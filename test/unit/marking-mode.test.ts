import v8 from 'node:v8';
import { markingModeFor, markingMode, SMALL_HEAP_BYTES, updateMarkingMode } from '../../src/transport/marking-mode';

const MiB = 1024 * 1024;

test('atomic while small, incremental once large, with hysteresis both ways', () => {
  expect(markingModeFor(10 * MiB, 'atomic')).toBe('atomic');
  expect(markingModeFor(SMALL_HEAP_BYTES, 'atomic')).toBe('atomic');
  expect(markingModeFor(SMALL_HEAP_BYTES + 1, 'atomic')).toBe('incremental');
  // a heap hovering just under the limit does not flip back and forth
  expect(markingModeFor(SMALL_HEAP_BYTES - MiB, 'incremental')).toBe('incremental');
  expect(markingModeFor(SMALL_HEAP_BYTES * 0.75, 'incremental')).toBe('incremental');
  expect(markingModeFor(SMALL_HEAP_BYTES * 0.75 - 1, 'incremental')).toBe('atomic');
  expect(markingModeFor(200 * MiB, 'incremental', 100 * MiB)).toBe('incremental');
  expect(markingModeFor(50 * MiB, 'incremental', 100 * MiB)).toBe('atomic');
});

test('the mode follows the heap size, and V8 keeps collecting in either mode', () => {
  expect(updateMarkingMode(1 * MiB)).toBe('atomic');
  expect(updateMarkingMode(SMALL_HEAP_BYTES * 2)).toBe('incremental');
  expect(markingMode()).toBe('incremental');
  expect(updateMarkingMode(SMALL_HEAP_BYTES * 0.8)).toBe('incremental');
  expect(updateMarkingMode(1 * MiB)).toBe('atomic');
  // garbage in the old generation is still collected with incremental marking off
  const before = v8.getHeapStatistics().used_heap_size;
  let keep: unknown[] = [];
  for (let round = 0; round < 20; round++) {
    keep = [];
    for (let i = 0; i < 20_000; i++) keep.push({ i, s: `x${i}` });
  }
  expect(keep.length).toBe(20_000);
  keep = [];
  expect(v8.getHeapStatistics().used_heap_size).toBeLessThan(before + 64 * MiB);
});

/**
 * Atomic major GCs while the heap is small, incremental ones once it is large.
 *
 * V8 starts incremental marking early, on a "soft limit": as soon as the old
 * generation's headroom is no larger than the young generation, which is at its
 * 16 MiB maximum while we relay. Relaying keeps promoting a few buffers that were
 * still queued at a scavenge (a stream waiting for window, a busy socket), so the
 * old generation grows a little, and V8 marks again: 33 mark-compacts per GiB in
 * the device agent with 8 parallel downloads, each with write barriers and black
 * allocation switched on while it runs. With incremental marking off, V8 collects
 * only when a limit is really reached, in one pause: 1 mark-compact (14 ms) for
 * the same transfer, agent CPU per GiB 1800 → 1110 ms, 8-stream download
 * 401 → 512 MiB/s (docs/performance.md).
 *
 * One pause is only short while the heap is small: about 1 ms per MiB marked on
 * our machines. A broker with many sessions has a large heap, so above
 * `SMALL_HEAP_BYTES` of used heap we switch incremental marking back on (and off
 * again below three quarters of it). V8 reads the flag each time it decides
 * whether to start marking, so flipping it at run time takes effect at once.
 */
import v8 from 'node:v8';

/** Used heap above which a single mark-compact pause would get long (~30 ms). */
export const SMALL_HEAP_BYTES = 32 * 1024 * 1024;
/** How often the heap size is checked. */
export const CHECK_INTERVAL_MS = 1000;

export type MarkingMode = 'atomic' | 'incremental';

/** The mode for a heap of `usedBytes`, with hysteresis around `limit`. */
export function markingModeFor(usedBytes: number, current: MarkingMode, limit = SMALL_HEAP_BYTES): MarkingMode {
  if (current === 'atomic' && usedBytes > limit) return 'incremental';
  if (current === 'incremental' && usedBytes < limit * 0.75) return 'atomic';
  return current;
}

const FLAG: Record<MarkingMode, string> = { atomic: '--no-incremental-marking', incremental: '--incremental-marking' };

let current: MarkingMode | undefined;
let timer: NodeJS.Timeout | undefined;

function setMode(mode: MarkingMode): void {
  if (mode === current) return;
  v8.setFlagsFromString(FLAG[mode]);
  current = mode;
}

/** Check the heap now and set the mode it calls for. */
export function updateMarkingMode(usedBytes = v8.getHeapStatistics().used_heap_size): MarkingMode {
  setMode(markingModeFor(usedBytes, current ?? 'atomic'));
  return current as MarkingMode;
}

/** Start choosing the marking mode by heap size (checked every second, off the event loop's keep-alive). Idempotent. */
export function watchMarkingMode(): void {
  updateMarkingMode();
  if (timer) return;
  timer = setInterval(() => updateMarkingMode(), CHECK_INTERVAL_MS);
  timer.unref();
}

/** The mode set last (undefined before `watchMarkingMode`). */
export function markingMode(): MarkingMode | undefined {
  return current;
}

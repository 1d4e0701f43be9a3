/**
 * Process-wide tuning for our own programs (`bin/broker`, `bin/broker-agent`).
 *
 * 1. SSH packet padding from a pooled CSPRNG (`random-pool.ts`), and ssh2 channels
 *    that do not build a dropped error on every close and that re-grant their
 *    window every 128 KiB instead of every 1 MiB (`ssh2-channel.ts`): all also
 *    applied by the package index (`installLibraryTuning`).
 * 2. `--no-concurrent-array-buffer-sweeping`. Every SSH packet and every socket
 *    read is a fresh ArrayBuffer (ssh2 allocates one per packet; node one per
 *    read), about 3 per 64 KiB relayed. With V8's default, buffers that died
 *    young are freed by a background task after each scavenge, so the external
 *    memory V8 counts keeps climbing past its limit and it starts a full
 *    mark-compact instead: 67 of them per 768 MiB through the broker, a third of
 *    its CPU. Freeing them inside the scavenge keeps the count honest: 1
 *    mark-compact for the same transfer, half the CPU per GiB in every process,
 *    twice the single-stream throughput (docs/performance.md).
 *    V8 reads this flag each time it sweeps, so setting it at startup works.
 * 3. `--interrupt-budget=33792`, half V8's default: functions that run once or
 *    twice per connection (SOCKS parsing, routing, channel setup) reach optimised
 *    code after about half as many connections. A/B over the first 3,000 sequential
 *    connections of fresh processes: 510 -> 595-633 connections/s; steady state
 *    923 -> 961-991/s; bulk throughput unchanged (a quarter of the default made
 *    bulk ~6 % slower).
 * 4. Atomic instead of incremental mark-compacts while the heap is under 32 MiB
 *    (`marking-mode.ts`): V8 otherwise keeps starting incremental marking on a
 *    soft limit while we relay, 33 times per GiB in the agent.
 * 5. `--no-allocation-site-pretenuring`. V8 learns that some allocation sites'
 *    objects survive (pooled channels do) and then allocates there straight into the
 *    old generation. Those old objects, dead soon after, still point at young ones,
 *    which every scavenge must then keep and promote: the broker promoted ~870 KB
 *    per scavenge under sequential connections (scavenges of 1.7-3 ms, the
 *    connection p99). Without pretenuring: 35 KB, 0.8-1.1 ms. A/B over 3,000
 *    connections: p99 2.77 -> 2.46 ms, broker CPU per connection -8 %, the first
 *    3,000 of fresh processes 596 -> 709/s; 8 downloads 536 vs 540 MiB/s.
 *    While the process warms up (its first 3 s of CPU), an eighth of the default
 *    instead (`warm-up.ts`): the first 2,000 connections of fresh processes +11 %
 *    with a quarter, and the 2,000th 9 % sooner again with an eighth.
 * 6. `--always-sparkplug`: functions get V8's baseline code on their first call,
 *    not after a budget spent in the interpreter. A/B, first 2,000 connections of
 *    fresh processes, three pairs: 489/499/441 -> 553/584/535 per second, p50
 *    1.38 -> 1.18 ms; steady rate and bulk unchanged; broker RSS +2.3 MiB.
 *    This and the warm-up budget (5.) are set only once the program is up
 *    (`applyRunningTuning`, called by each long-running command when it is ready):
 *    set at startup they compiled and optimised the module loading, the argument
 *    parsing and the SSH handshake, which run once. A/B: `broker-agent join` ready
 *    after 587 instead of 653 ms; a fresh chain's first 2,000 connections 4707 and
 *    5484 instead of 4956 and 6377 ms in two runs, the same within noise in a third.
 * 7. glibc's malloc keeps up to 64 MiB of freed heap mapped instead of 128 KiB
 *    (`malloc-thresholds.ts`): a relaying process's heap top moves by megabytes at
 *    every scavenge, and memory given back costs a page fault per 4 KiB when used
 *    again (up to 108,000 per GiB per process; about 16 µs each on a virtual
 *    machine). A/B, two chains per build: one download 144 / 222 -> 272 / 275 MiB/s.
 *
 * `BROKER_PROCESS_TUNING=0` turns all of it off (for measuring its effect).
 * Call applyProcessTuning before ssh2 is loaded (the padding pool needs it), and
 * applyRunningTuning once the program is up.
 */
import v8 from 'node:v8';
import { SMALL_HEAP_BYTES, watchMarkingMode } from './marking-mode';
import { installRandomPool } from './random-pool';
import { WARM_BUDGET_FLAG, WARM_CPU_MS, WARMING_BUDGET_FLAG, watchWarmUp, type WarmUp } from './warm-up';
import { patchChannelDestroy, patchChannelRegrant } from './ssh2-channel';
import { dynamicThresholdMax, raiseMallocThresholds } from './malloc-thresholds';

/** V8 flags set at startup (each is read by V8 when it applies, so run-time setting works). */
export const V8_FLAGS = ['--no-concurrent-array-buffer-sweeping', WARM_BUDGET_FLAG, '--no-allocation-site-pretenuring'];

/** V8 flags set once the program is up (`applyRunningTuning`): they pay off in the traffic's code, not the start's. */
export const RUNNING_FLAGS = ['--always-sparkplug'];

/** The parts that only change how ssh2 works inside, not the process: safe for any host. */
export function installLibraryTuning(): void {
  installRandomPool();
  patchChannelDestroy();
  patchChannelRegrant();
}

/** How `applyProcessTuning` reports the warm-up budget. */
export const WARMING_UP = `${WARMING_BUDGET_FLAG} for the first ${WARM_CPU_MS / 1000} s of CPU`;

/**
 * How `applyProcessTuning` reports the malloc thresholds: on Linux with glibc, which then sets its
 * trim threshold to twice the freed block (elsewhere the block is not freed, nor reported).
 */
export const MALLOC_THRESHOLDS = `glibc malloc trim threshold ${(2 * dynamicThresholdMax()) / 1048576} MiB`;

/** How `applyProcessTuning` reports the marking mode switch. */
export const ATOMIC_MARKING = `--no-incremental-marking below ${SMALL_HEAP_BYTES / 1048576} MiB heap`;

let applied: string[] = [];
/** What applyRunningTuning() added (reported after `applied`). */
let running: string[] = [];
/** Whether applyProcessTuning() ran with tuning enabled (applyRunningTuning follows it). */
let enabled = false;
let warmUp: WarmUp | undefined;
/** Whether ssh2 was still unloaded when the padding pool was first installed. */
let poolServesSsh2: boolean | undefined;
/** Whether the malloc thresholds were raised (once per process: Linux with glibc). */
let mallocRaised: boolean | undefined;

/** Apply the tuning unless disabled; returns what was applied. */
export function applyProcessTuning(env: NodeJS.ProcessEnv = process.env): string[] {
  enabled = env.BROKER_PROCESS_TUNING !== '0';
  if (!enabled) return [];
  // Reported only if it serves ssh2: its protocol code keeps the randomFillSync it found when it loaded.
  poolServesSsh2 ??= !ssh2ProtocolLoaded();
  installLibraryTuning();
  for (const flag of V8_FLAGS) v8.setFlagsFromString(flag);
  watchMarkingMode();
  mallocRaised ??= raiseMallocThresholds();
  applied = [...(poolServesSsh2 ? ['random-pool'] : []), ...V8_FLAGS, ATOMIC_MARKING, ...(mallocRaised ? [MALLOC_THRESHOLDS] : [])];
  return appliedProcessTuning();
}

/**
 * The rest, once the program is up (listening, exposed, joined): baseline code on a
 * function's first call, and the warm-up budget. Does nothing unless applyProcessTuning
 * ran enabled; returns everything applied.
 */
export function applyRunningTuning(): string[] {
  if (!enabled) return [];
  for (const flag of RUNNING_FLAGS) v8.setFlagsFromString(flag);
  // V8_FLAGS carry the warm budget; while warming up, the warming one replaces it.
  // (A host process that has used its 3 s of CPU already keeps the warm one.)
  if (!warmUp) warmUp = watchWarmUp();
  else if (warmUp.warming) v8.setFlagsFromString(WARMING_BUDGET_FLAG);
  running = [...RUNNING_FLAGS, ...(warmUp.warming ? [WARMING_UP] : [])];
  return appliedProcessTuning();
}

/** Whether the warm-up budget is in force (a host that had used its 3 s of CPU never gets it). */
export function warmingUp(): boolean {
  return warmUp?.warming ?? false;
}

/** Has ssh2's packet code (which binds `crypto.randomFillSync` when it loads) been loaded already? */
function ssh2ProtocolLoaded(): boolean {
  try {
    return require.cache[require.resolve('ssh2/lib/protocol/crypto.js')] !== undefined;
  } catch {
    return false;
  }
}

/** What applyProcessTuning() and applyRunningTuning() applied in this process (`broker serve` reports it at start). */
export function appliedProcessTuning(): string[] {
  return [...applied, ...running];
}

/**
 * A faster start for V8's optimising compiler: a sixteenth of its interrupt budget while
 * the process is young, half of it (`--interrupt-budget=33792`, process-tuning.ts)
 * once it has used WARM_CPU_MS of CPU.
 *
 * A function is optimised after it has spent its budget in unoptimised code. The code
 * a new connection runs (SOCKS, routing, channel setup, the relay) runs once or twice
 * per connection, so a fresh helper's first page loads run mostly unoptimised. With
 * a smaller budget it is optimised sooner. The first 2,000 sequential connections of
 * fresh chains (`bench/ab.js connections --fresh`, eight each, interleaved): a quarter
 * of the default 751 conn/s, an eighth 791, a sixteenth 849 (CPU per connection -7 %,
 * p50 0.87 -> 0.83 ms, p99 6.5 -> 7.4 ms: more optimising while the first ones run).
 * The first 3,000 connections of a chain 763 -> 918, the next 24,000 even (1230 vs
 * 1218/s). Kept for good, a quarter cost about 6 % of one stream's download in an
 * earlier session; used only while warming up, the first 512 MiB download after
 * 2,000 connections moved 366 vs 358 MiB/s (quarter / sixteenth, four each: noise). So it lasts only while the process warms up: CPU
 * used, not time since start, because a helper may sit idle for an hour before its
 * first connection. V8 reads the budget each time it resets a function's, so a
 * run-time switch takes effect as functions run out of their current one.
 */
import v8 from 'node:v8';

/** The budget while warming up: a sixteenth of V8's default (67584). */
export const WARMING_BUDGET_FLAG = '--interrupt-budget=4224';
/** The budget after warm-up (the one V8_FLAGS sets at startup). */
export const WARM_BUDGET_FLAG = '--interrupt-budget=33792';
/** CPU (user + system) after which the process counts as warm: about 5,000 new connections. */
export const WARM_CPU_MS = 3000;
/** How often the CPU used is checked. */
export const CHECK_EVERY_MS = 1000;

export interface WarmUpOptions {
  cpuMs?: number;
  everyMs?: number;
  /** The process's CPU use so far (injectable for tests). */
  cpuUsage?: () => NodeJS.CpuUsage;
  setFlag?: (flag: string) => void;
  /** Called once the warm budget is back. */
  onWarm?: () => void;
}

/** Has a process that used `cpu` so far warmed up? */
export function isWarm(cpu: NodeJS.CpuUsage, cpuMs = WARM_CPU_MS): boolean {
  return (cpu.user + cpu.system) / 1000 >= cpuMs;
}

/** A started warm-up watch. */
export interface WarmUp {
  /** True until the warm budget is back (false from the start for a process already warm). */
  readonly warming: boolean;
  /** Stop watching (the budget stays what it is then). */
  stop(): void;
}

/**
 * Set the warming budget unless the process is warm already, and switch to the warm
 * one once it is (checked every `everyMs`, off the event loop's keep-alive).
 */
export function watchWarmUp(opts: WarmUpOptions = {}): WarmUp {
  const cpuMs = opts.cpuMs ?? WARM_CPU_MS;
  const cpuUsage = opts.cpuUsage ?? (() => process.cpuUsage());
  const setFlag = opts.setFlag ?? ((flag: string) => v8.setFlagsFromString(flag));
  const state = { warming: false, stop: () => {} };
  if (isWarm(cpuUsage(), cpuMs)) return state;
  setFlag(WARMING_BUDGET_FLAG);
  state.warming = true;
  const timer = setInterval(() => {
    if (!isWarm(cpuUsage(), cpuMs)) return;
    clearInterval(timer);
    setFlag(WARM_BUDGET_FLAG);
    state.warming = false;
    opts.onWarm?.();
  }, opts.everyMs ?? CHECK_EVERY_MS);
  timer.unref();
  state.stop = () => clearInterval(timer);
  return state;
}

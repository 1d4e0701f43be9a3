/**
 * A faster start for V8's optimising compiler: an eighth of its interrupt budget while
 * the process is young, half of it (`--interrupt-budget=33792`, process-tuning.ts)
 * once it has used WARM_CPU_MS of CPU.
 *
 * A function is optimised after it has spent its budget in unoptimised code. The code
 * a new connection runs (SOCKS, routing, channel setup, the relay) runs once or twice
 * per connection, so a fresh helper's first page loads run mostly unoptimised. With a
 * smaller budget it is optimised sooner, for more optimising work at the very start.
 * Fresh chains, cumulative ms to their 20th / 100th / 500th / 2,000th / 5,000th
 * sequential connection (medians of six, interleaved):
 *
 *   half throughout      47 / 302 / 1144 / 2871 / 5669
 *   an eighth           102 / 422 / 1162 / 2520 / 5119
 *   a sixteenth         133 / 534 / 1127 / 2538 / 5134
 *
 * The first 100 connections cost the three processes 330-360 ms of CPU with half,
 * 560-580 with an eighth and 740-760 with a sixteenth (compiling); the next 1,900 cost
 * 2.7, 2.1 and 2.0 s. An eighth gets all of a sixteenth's gain over the first
 * thousands for half its cost in the first dozens (a page's worth). Kept for good, a
 * quarter cost about 6 % of one stream's download in an earlier session; used only
 * while warming up, bulk does not move. So it lasts only while the process warms up:
 * CPU used, not time since start, because a helper may sit idle for an hour before its
 * first connection. V8 reads the budget each time it resets a function's, so a
 * run-time switch takes effect as functions run out of their current one. Starting
 * the small budget only after the first ~100 connections kept them fast but lost the
 * gain later (2,000th at 2859 ms): what pays off is optimising early.
 */
import v8 from 'node:v8';

/** The budget while warming up: an eighth of V8's default (67584). */
export const WARMING_BUDGET_FLAG = '--interrupt-budget=8448';
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

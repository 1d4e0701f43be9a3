/**
 * The warm-up budget: an eighth of V8's interrupt budget until the process has used
 * its warm-up CPU, then the warm one, once; nothing for a process already warm.
 */
import { isWarm, WARM_BUDGET_FLAG, WARMING_BUDGET_FLAG, watchWarmUp } from '../../src/transport/warm-up';

const cpu = (ms: number) => ({ user: ms * 700, system: ms * 300 }); // microseconds

describe('watchWarmUp', () => {
  test('isWarm counts user and system CPU against the limit', () => {
    expect(isWarm(cpu(2999), 3000)).toBe(false);
    expect(isWarm(cpu(3000), 3000)).toBe(true);
  });

  test('sets the warming budget, then the warm one once the CPU used reaches the limit', async () => {
    let used = 100;
    const flags: string[] = [];
    let warmed = 0;
    const w = watchWarmUp({ cpuMs: 500, everyMs: 5, cpuUsage: () => cpu(used), setFlag: (f) => flags.push(f), onWarm: () => warmed++ });
    try {
      expect(flags).toEqual([WARMING_BUDGET_FLAG]);
      expect(w.warming).toBe(true);
      await new Promise((r) => setTimeout(r, 30));
      expect(flags).toEqual([WARMING_BUDGET_FLAG]); // still cold
      used = 600;
      for (const deadline = Date.now() + 2000; warmed === 0 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 5));
      expect(flags).toEqual([WARMING_BUDGET_FLAG, WARM_BUDGET_FLAG]);
      expect(w.warming).toBe(false);
      await new Promise((r) => setTimeout(r, 30));
      expect(warmed).toBe(1); // the watch has stopped
    } finally {
      w.stop();
    }
  });

  test('a process already warm keeps the warm budget', () => {
    const flags: string[] = [];
    const w = watchWarmUp({ cpuMs: 500, cpuUsage: () => cpu(800), setFlag: (f) => flags.push(f) });
    expect(flags).toEqual([]);
    expect(w.warming).toBe(false);
    w.stop();
  });
});

/**
 * The pre-opened channel pool: fills to its size, hands out ready channels, skips
 * ones the peer closed, refills only after the taker's first write has gone out
 * (so the peer sees the request before the next open), and stops on close().
 */
import { Duplex } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { ChannelPool, REFILL_AFTER_DROP_MS, type ChannelPoolOptions } from '../../src/transport/channel-pool';

function fakeOpener() {
  const log: string[] = [];
  let n = 0;
  let refuse = false;
  const open = (): Promise<Duplex & { id: number }> => {
    const id = ++n;
    log.push(`open ${id}`);
    if (refuse) return Promise.reject(new Error('refused'));
    // Records writes as they are made (as ssh2 hands them to its socket).
    const ch = Object.assign(new Duplex({
      read() { /* nothing comes back */ },
      write(d: Buffer, _enc, cb) { log.push(`write ${id}: ${d.toString()}`); cb(); },
    }), { id });
    return Promise.resolve(ch);
  };
  return { open, log, refuse: (on: boolean) => { refuse = on; } };
}

/** A pool of `size` over a fake opener, filled (its opens have resolved). */
async function filledPool(size: number, opts?: ChannelPoolOptions) {
  const f = fakeOpener();
  const pool = new ChannelPool(f.open, size, opts);
  pool.fill();
  await tick();
  return { f, pool };
}

describe('ChannelPool', () => {
  test('fills to its size and hands out the oldest ready channel', async () => {
    const { pool } = await filledPool(3);
    expect(pool.ready).toBe(3);
    expect((await pool.take()).id).toBe(1);
    pool.close();
  });

  test("the refill's open comes after the taker's first write, in the same turn", async () => {
    const { f, pool } = await filledPool(2);
    f.log.length = 0;
    setImmediate(() => f.log.push('next turn'));
    const ch = await pool.take();
    ch.write('CONNECT');
    await tick();
    await tick();
    expect(f.log).toEqual(['write 1: CONNECT', 'open 3', 'next turn']);
    expect(pool.ready).toBe(2);
    pool.close();
  });

  test('several takes in one turn schedule one refill, which tops the pool up', async () => {
    const { f, pool } = await filledPool(3);
    await Promise.all([pool.take(), pool.take()]);
    await tick();
    await tick();
    expect(f.log.filter((l) => l.startsWith('open'))).toEqual(['open 1', 'open 2', 'open 3', 'open 4', 'open 5']);
    expect(pool.ready).toBe(3);
    pool.close();
  });

  test('channels the peer closed while idle are skipped', async () => {
    const { pool } = await filledPool(2);
    const first = await pool.take();
    first.destroy();
    await tick();
    const idle = (pool as unknown as { idle: Array<Duplex & { id: number }> }).idle;
    idle[0]!.destroy(); // channel 2 closes while idle
    await tick();
    expect((await pool.take()).id).toBe(3);
    pool.close();
  });

  test('a channel the peer closed while idle is replaced a second later, and not in a busy loop', async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      const { f, pool } = await filledPool(2);
      const idle = (pool as unknown as { idle: Array<Duplex & { id: number }> }).idle;
      idle[0]!.destroy();
      idle[1]!.destroy(); // the broker's idle timeout closes both
      await tick();
      expect(pool.ready).toBe(0);
      expect(f.log).toEqual(['open 1', 'open 2']);
      jest.advanceTimersByTime(REFILL_AFTER_DROP_MS - 1);
      await tick();
      expect(pool.ready).toBe(0);
      jest.advanceTimersByTime(1);
      await tick();
      expect(f.log).toEqual(['open 1', 'open 2', 'open 3', 'open 4']);
      expect(pool.ready).toBe(2);
      pool.close();
      expect(jest.getTimerCount()).toBe(0);
    } finally {
      jest.useRealTimers();
    }
  });

  test('an empty pool opens a channel for the taker at once', async () => {
    const f = fakeOpener();
    const pool = new ChannelPool(f.open, 1);
    const ch = await pool.take();
    expect(ch.id).toBeGreaterThan(0);
    pool.close();
  });

  test('a refused open stops refilling until the next take (no busy loop)', async () => {
    const f = fakeOpener();
    f.refuse(true);
    const pool = new ChannelPool(f.open, 2);
    pool.fill();
    await tick();
    await tick();
    expect(f.log).toEqual(['open 1', 'open 2']);
    expect(pool.ready).toBe(0);
    pool.close();
  });

  test('close() destroys idle channels and cancels a scheduled refill', async () => {
    const { f, pool } = await filledPool(2);
    const idle = [...(pool as unknown as { idle: Duplex[] }).idle];
    await pool.take();
    pool.close();
    await tick();
    await tick();
    expect(f.log.filter((l) => l.startsWith('open'))).toEqual(['open 1', 'open 2']);
    expect(idle[1]!.destroyed).toBe(true);
    expect(pool.ready).toBe(0);
  });

  test('a burst that drains the pool below half raises what it keeps ready, up to max', async () => {
    const { pool } = await filledPool(4, { max: 9, decayMs: 60_000 });
    await Promise.all([pool.take(), pool.take()]); // half left: no growth
    expect(pool.capacity).toBe(4);
    await tick();
    await tick();
    await Promise.all([pool.take(), pool.take(), pool.take()]); // one left: two more from now on
    expect(pool.capacity).toBe(6);
    await tick();
    await tick();
    await Promise.all(Array.from({ length: 7 }, () => pool.take())); // drained, one miss: up to max
    expect(pool.capacity).toBe(9);
    await tick();
    await tick();
    // the next burst of nine is served from the pool, none opened on demand
    const ready = [...(pool as unknown as { idle: Duplex[] }).idle];
    expect(ready).toHaveLength(9);
    const taken = await Promise.all(Array.from({ length: 9 }, () => pool.take()));
    expect(taken.every((c) => ready.includes(c))).toBe(true);
    pool.close();
  });

  test('sequential takes never grow it', async () => {
    const { pool } = await filledPool(2, { max: 8 });
    for (let i = 0; i < 20; i++) {
      await pool.take();
      await tick();
      await tick();
    }
    expect(pool.capacity).toBe(2);
    pool.close();
  });

  test('a refused open brings a grown pool back to its size (no flood of opens while the peer refuses)', async () => {
    const { f, pool } = await filledPool(2, { max: 16 });
    await Promise.all(Array.from({ length: 6 }, () => pool.take()));
    await tick();
    await tick();
    const grown = pool.capacity;
    expect(grown).toBeGreaterThan(2);
    expect(pool.ready).toBe(grown);
    f.refuse(true);
    await Promise.all(Array.from({ length: grown }, () => pool.take())); // drains it: the refills are refused
    await tick();
    await tick();
    expect(pool.capacity).toBe(2);
    const opensBefore = f.log.filter((l) => l.startsWith('open')).length;
    await pool.take().catch(() => undefined); // empty and refused: the taker's own open plus a refill to the size
    await tick();
    await tick();
    expect(f.log.filter((l) => l.startsWith('open')).length - opensBefore).toBeLessThanOrEqual(5);
    pool.close();
  });

  test('without max the pool stays at its size', async () => {
    const { pool } = await filledPool(2);
    await Promise.all(Array.from({ length: 6 }, () => pool.take()));
    expect(pool.capacity).toBe(2);
    pool.close();
  });

  describe('shrinking (fake clock)', () => {
    beforeEach(() => { jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask', 'setImmediate'] }); });
    afterEach(() => { jest.useRealTimers(); });

    test('once quiet, it halves back towards its size and closes the idle extras', async () => {
      const { pool } = await filledPool(2, { max: 8, decayMs: 30_000 });
      await Promise.all(Array.from({ length: 8 }, () => pool.take())); // drained, 6 misses: up to max
      await tick();
      await tick();
      expect(pool.capacity).toBe(8);
      expect(pool.ready).toBe(8);
      const idle = [...(pool as unknown as { idle: Duplex[] }).idle];
      jest.advanceTimersByTime(29_000);
      expect(pool.capacity).toBe(8);
      jest.advanceTimersByTime(1_000);
      expect(pool.capacity).toBe(4);
      expect(pool.ready).toBe(4);
      expect(idle.filter((c) => c.destroyed)).toHaveLength(4);
      jest.advanceTimersByTime(30_000);
      expect(pool.capacity).toBe(2);
      expect(pool.ready).toBe(2);
      jest.advanceTimersByTime(60_000);
      expect(pool.capacity).toBe(2);
      expect(jest.getTimerCount()).toBe(0);
      pool.close();
    });

    test('another draining burst during the quiet time postpones the shrinking', async () => {
      const { pool } = await filledPool(2, { max: 8, decayMs: 30_000 });
      await Promise.all([pool.take(), pool.take()]); // drained: capacity 4
      expect(pool.capacity).toBe(4);
      await tick();
      await tick();
      jest.advanceTimersByTime(20_000);
      await Promise.all([pool.take(), pool.take(), pool.take(), pool.take()]); // drained again: 8
      expect(pool.capacity).toBe(8);
      jest.advanceTimersByTime(20_000); // 40 s since the first growth, 20 s since the last
      expect(pool.capacity).toBe(8);
      jest.advanceTimersByTime(10_000);
      expect(pool.capacity).toBe(4);
      pool.close();
    });

    test('close() stops the shrinking timer', async () => {
      const { pool } = await filledPool(2, { max: 8, decayMs: 30_000 });
      await Promise.all([pool.take(), pool.take()]);
      expect(jest.getTimerCount()).toBe(1);
      pool.close();
      expect(jest.getTimerCount()).toBe(0);
    });
  });
});

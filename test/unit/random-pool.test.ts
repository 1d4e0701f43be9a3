import crypto from 'node:crypto';
import { RandomPool, installRandomPool, POOL_MAX_FILL } from '../../src/transport/random-pool';

test('a pool hands out each byte once and refills in bulk', () => {
  let refills = 0;
  let counter = 0;
  const pool = new RandomPool((buf) => {
    refills++;
    for (let i = 0; i < buf.length; i++) buf[i] = (counter++ % 251) + 1; // never 0: a stale 0 would show
  }, 64);
  const seen: number[] = [];
  for (let i = 0; i < 20; i++) {
    const out = Buffer.alloc(12);
    pool.take(out, 2, 10);
    expect(out.subarray(0, 2)).toEqual(Buffer.alloc(2)); // bytes outside the range untouched
    expect(out.subarray(2).includes(0)).toBe(false);
    seen.push(...out.subarray(2));
  }
  // 200 bytes from a 64-byte pool: 6 fills per 60 handed out, each byte handed out once, in order
  expect(refills).toBe(Math.ceil(200 / 60));
  const expected: number[] = [];
  for (let f = 0; expected.length < 200; f++) for (let j = 0; j < 60 && expected.length < 200; j++) expected.push(((f * 64 + j) % 251) + 1);
  expect(seen).toEqual(expected);
  expect(() => pool.take(Buffer.alloc(100), 0, 65)).toThrow(RangeError);
});

test('installRandomPool keeps randomFillSync correct for every calling form', () => {
  installRandomPool();
  expect(installRandomPool()).toBe(false); // idempotent
  // ssh2's form: (buf, offset, size) with padding-sized fills, from the pool
  const packets = Array.from({ length: 200 }, () => {
    const b = Buffer.alloc(64);
    expect(crypto.randomFillSync(b, 5, 32)).toBe(b);
    expect(b.subarray(0, 5)).toEqual(Buffer.alloc(5));
    expect(b.subarray(37)).toEqual(Buffer.alloc(27));
    return b.subarray(5, 37).toString('hex');
  });
  expect(new Set(packets).size).toBe(200); // no two paddings alike
  // other forms go straight to node's implementation
  const whole = crypto.randomFillSync(Buffer.alloc(POOL_MAX_FILL + 1));
  expect(whole.equals(Buffer.alloc(POOL_MAX_FILL + 1))).toBe(false);
  const u32 = crypto.randomFillSync(new Uint32Array(8));
  expect(u32.some((x) => x !== 0)).toBe(true);
  expect(() => crypto.randomFillSync(Buffer.alloc(4), 3, 4)).toThrow(); // out of range: node's own error
  // bytes are spread over all values
  const big = Buffer.alloc(64 * 200);
  for (let i = 0; i < 200; i++) crypto.randomFillSync(big, i * 64, 64);
  expect(new Set(big).size).toBeGreaterThan(250);
});

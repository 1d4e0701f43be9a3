/**
 * Which C library this process runs on, read from its memory map: only glibc raises
 * its malloc thresholds when the freed block comes back, so only then does the tuning
 * report say so.
 */
import { usesGlibc } from '../../src/transport/malloc-thresholds';

const line = (path: string) => `7fd5c6d3e000-7fd5c6d64000 r--p 00000000 fe:00 339380                     ${path}`;

test('glibc: libc.so.6 (or an old libc-2.NN.so) is mapped', () => {
  expect(usesGlibc([line('/usr/bin/node'), line('/usr/lib/x86_64-linux-gnu/libc.so.6'), line('[heap]')].join('\n'))).toBe(true);
  expect(usesGlibc([line('/lib64/libc-2.17.so'), line('/lib64/ld-2.17.so')].join('\n'))).toBe(true);
});

test('musl (Alpine), or no C library named in the map: not glibc', () => {
  expect(usesGlibc([line('/usr/bin/node'), line('/lib/ld-musl-x86_64.so.1'), line('/usr/lib/libstdc++.so.6.0.32')].join('\n'))).toBe(false);
  expect(usesGlibc([line('/usr/bin/node'), line('[vdso]')].join('\n'))).toBe(false);
  expect(usesGlibc('')).toBe(false);
  // a file merely named like it, elsewhere in a path, does not count
  expect(usesGlibc(line('/opt/libc.so.6.bak'))).toBe(false);
});

test('this process: on Linux the map is read; the answer is the same every time', () => {
  const here = usesGlibc();
  expect(typeof here).toBe('boolean');
  if (process.platform !== 'linux') expect(here).toBe(false);
  expect(usesGlibc()).toBe(here);
});

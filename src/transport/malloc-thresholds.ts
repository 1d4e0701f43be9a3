/**
 * Keep freed memory mapped: raise glibc malloc's trim threshold, the one way a Node
 * program can.
 *
 * glibc gives the top of its heap back to the kernel once more than its trim threshold
 * (128 KiB by default) is free there, and gives every block of 128 KiB or more a
 * mapping of its own, unmapped when freed. Memory given back costs a page fault per
 * 4 KiB when it is used again. A relaying process allocates a buffer per socket read
 * and per SSH packet and frees them in batches at each scavenge, so the top of its heap
 * moves up and down by megabytes all the time. Measured per GiB of one download
 * (`bench/ab.js download`, two chains of the same build): broker 19,000-26,000 page
 * faults, agent 3,600-24,000, helper 180-108,000; on the 2026-11-27 machine (a virtual
 * machine) a fault costs about 16 µs, so one helper spent 1.7 s of its 4.4 s of CPU per
 * GiB in them. How many faults a process takes depends on its heap's layout, for the
 * process's life: one chain of processes downloaded 45 % slower than another of the
 * same build.
 *
 * `mallopt(M_TRIM_THRESHOLD)` would fix it; Node cannot call it, and the environment
 * (`MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`) is read before our code runs. But glibc
 * raises both thresholds by itself (mallopt(3), "dynamic mmap threshold"): when a block
 * that had a mapping of its own is freed, the mmap threshold becomes that block's size,
 * up to 4 MiB × sizeof(long), and the trim threshold twice that. So at startup we
 * allocate one ArrayBuffer just under that maximum and drop it. It is never touched (a
 * fresh mapping is zero already, so calloc writes nothing: no page is faulted in), and
 * V8 frees it at one of the first scavenges. From then on blocks up to 32 MiB come from
 * the heap, and up to 64 MiB free at its top stays mapped.
 *
 * A/B, two chains per build, six runs of a 256 MiB download each: 144 / 222 -> 272 /
 * 275 MiB/s; page faults per GiB 34-1,530 in every process; CPU per GiB broker
 * 2,460-3,040 -> 2,000-2,020 ms, helper 1,540-4,420 -> 1,460-1,500. Eight downloads
 * 248 / 258 -> 293 / 303 MiB/s, one upload 241 / 245 -> 277 / 297. Sequential
 * connections and fairness did not move (their 1-2 faults per connection come from
 * V8's heap pages). The cost: after a burst a process keeps up to 64 MiB of free heap
 * mapped, where it kept about 35 MiB after its first download before.
 *
 * Under another C library (musl) nothing is allocated. Where glibc's thresholds were set
 * in the environment (which switches its adjustment off) the buffer is one mapping made
 * and unmade: harmless.
 * Not on other operating systems.
 */
import fs from 'node:fs';

/** glibc's upper bound for the dynamic mmap threshold: 4 MiB × sizeof(long). */
export function dynamicThresholdMax(arch: string = process.arch): number {
  const longBytes = /64|s390x/.test(arch) ? 8 : 4;
  return 4 * 1024 * 1024 * longBytes;
}

/** The block to free: under the maximum by more than glibc's chunk header and page rounding. */
export function thresholdBlockBytes(arch: string = process.arch): number {
  return dynamicThresholdMax(arch) - 64 * 1024;
}

/**
 * Allocate and drop, untouched, one block that glibc maps on its own, so that freeing it
 * raises the mmap threshold to its size and the trim threshold to twice that. Linux with
 * glibc only (elsewhere the block changes nothing, and the tuning report must not say it
 * did); returns whether it did.
 */
export function raiseMallocThresholds(
  platform: NodeJS.Platform = process.platform,
  blockBytes: number = thresholdBlockBytes(),
  glibc: boolean = platform === 'linux' && usesGlibc(),
): boolean {
  if (platform !== 'linux' || !glibc) return false;
  try {
    // Zero-filled by the allocator, which for a fresh mapping writes nothing; dropped at once.
    void new ArrayBuffer(blockBytes);
    return true;
  } catch {
    return false; // no 32 MiB of address space to spare (a strict overcommit limit): start without it
  }
}

/**
 * Whether this process's C library is glibc (its libc.so.6 is mapped, no musl loader
 * is), from /proc/self/maps (or `maps`); false when that cannot be read. Read once per
 * process, at startup (0.2-0.3 ms here).
 */
export function usesGlibc(maps?: string): boolean {
  let text = maps;
  if (text === undefined) {
    try {
      text = fs.readFileSync('/proc/self/maps', 'latin1');
    } catch {
      return false;
    }
  }
  return /\/libc(\.so\.6|-2\.\d+\.so)$/m.test(text) && !/\/ld-musl-[^/\s]*\.so\.1$/m.test(text);
}

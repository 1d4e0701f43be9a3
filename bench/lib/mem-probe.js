'use strict';
/**
 * Preloaded (`node --expose-gc -r bench/lib/mem-probe.js bin/broker ...`) into the
 * broker of the memory scenario only: on SIGUSR2 it runs a full GC (if exposed)
 * and writes process.memoryUsage() as JSON to $BENCH_MEM_FILE. Lets the
 * benchmark read heap numbers without touching src/.
 */
const fs = require('node:fs');

const file = process.env.BENCH_MEM_FILE;
if (file) {
  process.on('SIGUSR2', () => {
    if (typeof global.gc === 'function') { global.gc(); global.gc(); }
    const m = process.memoryUsage();
    fs.writeFileSync(file, JSON.stringify({ t: Date.now(), ...m }));
  });
}

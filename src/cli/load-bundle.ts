/**
 * Loads what the CLIs run (`entry.ts`) from the single-file bundle that
 * `scripts/bundle.js` builds, with V8's code cache for it: a helper's start is
 * mostly module loading (docs/performance.md, "Start-up"), and from separate files
 * every module costs a resolve, a read and a compile, in yargs's case through the
 * ESM loader. From one file with its compiled code cached, `broker-agent join` is
 * ready in 0.7x the time, on 0.66x the CPU.
 *
 * The cache is written by the build, in a process that has loaded every command's
 * module (so it holds their compiled top-level code) and before any V8 flag is set:
 * V8 accepts a cache only where the flags are the same as when it was made, and the
 * bundle is compiled before `applyProcessTuning` sets ours. A node binary or V8
 * flags that differ (`--max-old-space-size` in NODE_OPTIONS, `node --expose-gc
 * bin/...`; not `--cpu-prof`, a node option) make V8 reject it, and the bundle is
 * then compiled as usual. Without a bundle (a build by `tsc` alone) the entry module
 * runs from dist/ as separate files.
 *
 * Only node's built-in modules are loaded here: this file runs before the tuning.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import Module from 'node:module';
import type * as Entry from './entry';

/** The bundle and its code cache, beside dist/cli/. */
export const BUNDLE_FILE = path.join(__dirname, '..', 'cli.bundle.js');
export const CODE_CACHE_FILE = path.join(__dirname, '..', 'cli.bundle.cache');

/**
 * How the entry was loaded: from separate files, or the bundle with its cache used,
 * rejected by V8 (other flags or node binary), damaged or written for other bundle
 * bytes (our digest), or absent.
 */
export type LoadedFrom = 'files' | 'bundle, code cache used' | 'bundle, code cache rejected' | 'bundle, code cache damaged' | 'bundle, no code cache';

/**
 * The cache file is a SHA-256 digest of the bundle's bytes and V8's data, then V8's
 * data. V8 checks its data's length, its own version, the flags and the source's
 * length, but not the data's content: a damaged cache crashed node (a V8 trap or a
 * segfault, in a test that overwrote 4 KiB of it), and a cache for other bundle
 * bytes of the same length would run the wrong code. Checking the digest takes ~2 ms.
 */
const DIGEST_BYTES = 32;
function cacheDigest(bundle: Buffer, data: Uint8Array): Buffer {
  return createHash('sha256').update(bundle).update(data).digest();
}

export interface LoadedEntry {
  entry: typeof Entry;
  from: LoadedFrom;
  /** The compiled bundle and its bytes (absent when loaded from files). */
  script?: vm.Script;
  bundle?: Buffer;
}

/** Load the CLI entry, from the bundle if there is one (with its code cache unless `cacheFile` is null). */
export function loadEntry(bundleFile = BUNDLE_FILE, cacheFile: string | null = CODE_CACHE_FILE): LoadedEntry {
  let bundle: Buffer;
  try {
    bundle = fs.readFileSync(bundleFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const entry = require('./entry') as typeof Entry;
    entry.setCodeOrigin('files');
    return { entry, from: 'files' };
  }
  const source = bundle.toString('utf8');
  let cacheFileData: Buffer | undefined;
  try {
    if (cacheFile !== null) cacheFileData = fs.readFileSync(cacheFile);
  } catch { /* no cache: compile */ }
  let cachedData: Buffer | undefined;
  if (cacheFileData && cacheFileData.length > DIGEST_BYTES) {
    const data = cacheFileData.subarray(DIGEST_BYTES);
    if (cacheDigest(bundle, data).equals(cacheFileData.subarray(0, DIGEST_BYTES))) cachedData = data;
  }
  const script = new vm.Script(Module.wrap(source), { filename: bundleFile, cachedData });
  const mod = new Module(bundleFile, module);
  mod.filename = bundleFile;
  const wrapper = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
  wrapper.call(mod.exports, mod.exports, Module.createRequire(bundleFile), mod, bundleFile, path.dirname(bundleFile));
  mod.loaded = true;
  const from: LoadedFrom = cacheFileData === undefined ? 'bundle, no code cache'
    : cachedData === undefined ? 'bundle, code cache damaged'
      : script.cachedDataRejected ? 'bundle, code cache rejected' : 'bundle, code cache used';
  const entry = mod.exports as typeof Entry;
  entry.setCodeOrigin(from);
  return { entry, from, script, bundle };
}

/**
 * Write the bundle's code cache (the build runs this in a fresh process without
 * node flags): load the bundle without a cache, load every command, save what V8
 * has compiled. Returns the cache's size in bytes.
 */
export function writeCodeCache(bundleFile = BUNDLE_FILE, cacheFile = CODE_CACHE_FILE): number {
  const { entry, script, bundle } = loadEntry(bundleFile, null);
  if (!script || !bundle) throw new Error(`no bundle at ${bundleFile}: run npm run build`);
  entry.loadCommands();
  const data = script.createCachedData();
  const file = Buffer.concat([cacheDigest(bundle, data), data]);
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, file);
  fs.renameSync(tmp, cacheFile);
  return file.length;
}

'use strict';
/**
 * Frozen copies of the code under test. `npm run bench` measures a snapshot so
 * that rebuilding dist/ during a long run cannot mix two versions of the code
 * into one set of results; `bench/ab.js --snapshot DIR` keeps one so that a later
 * build can be compared with it side by side (variant setting `build=DIR`).
 */
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');

/** Newest mtime (ms) of the files under `dir` whose names end in `ext`; 0 if none. */
function newestFile(dir, ext) {
  let t = 0;
  const walk = (p) => {
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const f = path.join(p, e.name);
      if (e.isDirectory()) walk(f);
      else if (f.endsWith(ext)) t = Math.max(t, fs.statSync(f).mtimeMs);
    }
  };
  try { walk(dir); } catch { /* missing: 0 */ }
  return t;
}

/**
 * Copy bin/, dist/ and package.json into `into` (node_modules linked). Returns
 * { dir, distBuiltAt, srcNewerThanDist } so the caller can warn about a stale build.
 */
function snapshotCode(into) {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run npm run build first');
  fs.mkdirSync(into, { recursive: true });
  fs.cpSync(path.join(ROOT, 'dist'), path.join(into, 'dist'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'bin'), path.join(into, 'bin'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(into, 'package.json'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(into, 'node_modules'));
  const distT = newestFile(path.join(ROOT, 'dist'), '.js');
  const srcT = newestFile(path.join(ROOT, 'src'), '.ts');
  return { dir: into, distBuiltAt: new Date(distT).toISOString(), srcNewerThanDist: srcT > distT };
}

/** True if `dir` looks like a snapshot (or a checkout) we can run: bin/ and a built dist/. */
function isRunnableCode(dir) {
  return fs.existsSync(path.join(dir, 'bin', 'broker')) && fs.existsSync(path.join(dir, 'dist', 'cli', 'main.js'));
}

module.exports = { snapshotCode, isRunnableCode, ROOT };

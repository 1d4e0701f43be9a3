#!/usr/bin/env node
'use strict';
/**
 * Build step after tsc (`npm run build`): bundle what the CLIs run (src/cli/entry.ts)
 * into dist/cli.bundle.js with esbuild, then write its V8 code cache
 * (dist/cli.bundle.cache) in a fresh node process. Why: docs/performance.md, "Start-up";
 * how they are loaded: src/cli/load-bundle.ts.
 *
 * ssh2 is bundled but its native crypto binding is loaded from node_modules (by
 * package path instead of ssh2's relative one), and cpu-features, which ssh2 asks for
 * that binding, stays there too. Whitespace is minified (names kept, for stack
 * traces; the source map is beside the bundle). yargs is bundled as well; its ESM platform shim asks `import.meta.url`
 * where its own files are (for its message translations), which a CommonJS bundle
 * does not have: it gets the bundle's URL, finds no translations there and prints
 * its messages in English, like the rest of our output (docs/decisions.md).
 */
const path = require('node:path');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const esbuild = require('esbuild');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');
const bundle = path.join(dist, 'cli.bundle.js');
const cache = path.join(dist, 'cli.bundle.cache');

/** ssh2 requires its binding as './crypto/build/Release/sshcrypto.node': keep it a require, from node_modules. */
const ssh2NativeBinding = {
  name: 'ssh2-native-binding',
  setup(build) {
    build.onResolve({ filter: /^\.\/crypto\/build\/Release\/sshcrypto\.node$/ }, () => ({ path: 'ssh2/lib/protocol/crypto/build/Release/sshcrypto.node', external: true }));
  },
};

async function main() {
  fs.rmSync(cache, { force: true });
  await esbuild.build({
    entryPoints: [path.join(root, 'src', 'cli', 'entry.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    tsconfig: path.join(root, 'tsconfig.build.json'),
    external: ['cpu-features'],
    plugins: [ssh2NativeBinding],
    minifyWhitespace: true,
    banner: { js: "const __bundleImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
    define: { 'import.meta.url': '__bundleImportMetaUrl' },
    sourcemap: true,
    logLevel: 'warning',
  });
  // A fresh process without NODE_OPTIONS: V8 keeps a code cache only for the flags it was made with.
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const bytes = execFileSync(process.execPath, ['-e', "process.stdout.write(String(require('./dist/cli/load-bundle.js').writeCodeCache()))"], { cwd: root, env, encoding: 'utf8' });
  const kib = (n) => `${Math.round(n / 1024)} KiB`;
  process.stdout.write(`bundle: dist/cli.bundle.js ${kib(fs.statSync(bundle).size)}, code cache ${kib(Number(bytes))}\n`);
}

main().catch((err) => {
  process.stderr.write(`bundle: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
});

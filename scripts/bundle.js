#!/usr/bin/env node
'use strict';
/**
 * Build step after tsc (`npm run build`): bundle what the CLIs run (src/cli/entry.ts)
 * into dist/cli.bundle.js with esbuild, then write its V8 code cache
 * (dist/cli.bundle.cache) in a fresh node process. Why: docs/performance.md, "Start-up";
 * how they are loaded: src/cli/load-bundle.ts.
 *
 * ssh2 is bundled, but its native crypto binding is loaded from node_modules (by
 * package path instead of ssh2's relative one), and cpu-features, which ssh2 asks
 * for that binding, stays there too. Whitespace is minified (names are kept for
 * stack traces; the source map is beside the bundle). yargs is bundled as well: its
 * ESM platform shim finds its message translations and the program's package.json
 * (for `--version`) from its own `import.meta.url`, which a CommonJS bundle does not
 * have, so the shim gets its real file's URL, resolved when it loads; other
 * `import.meta.url`s (yargs-parser's, for config files we do not use) get the
 * bundle's.
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

/** yargs's ESM shim locates its files from import.meta.url: give it its own file's URL, found at run time. */
const YARGS_SHIM = /[\\/]node_modules[\\/]yargs[\\/]lib[\\/]platform-shims[\\/]esm\.mjs$/;
const yargsShimUrl = {
  name: 'yargs-shim-url',
  setup(build) {
    build.onLoad({ filter: YARGS_SHIM }, (args) => ({
      contents: fs.readFileSync(args.path, 'utf8').replaceAll('import.meta.url', '__yargsShimUrl()'),
      loader: 'js',
    }));
  },
};
const BANNER = `const __bundleImportMetaUrl = require('node:url').pathToFileURL(__filename).href;
function __yargsShimUrl() {
  try {
    const root = require('node:path').dirname(require.resolve('yargs/package.json'));
    return require('node:url').pathToFileURL(require('node:path').join(root, 'lib', 'platform-shims', 'esm.mjs')).href;
  } catch {
    return __bundleImportMetaUrl;
  }
}`;

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
    plugins: [ssh2NativeBinding, yargsShimUrl],
    minifyWhitespace: true,
    banner: { js: BANNER },
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

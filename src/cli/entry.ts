/**
 * What `bin/broker` and `bin/broker-agent` run: the bundle's entry point
 * (`dist/cli.bundle.js`, built from here by `scripts/bundle.js`, loaded by
 * `load-bundle.ts`). Without a bundle the same module runs unbundled from dist/.
 */
export { agentMain, brokerMain } from './main';
export { applyProcessTuning } from '../transport/process-tuning';
export { setCodeOrigin } from './code-origin';

/**
 * Load every command's module without running it: the build calls this before it
 * saves the bundle's V8 code cache, so that the cache holds the compiled top-level
 * code of everything a command loads, not only of this file.
 */
export function loadCommands(): void {
  require('./serve');
  require('./expose');
  require('./join');
  require('./exec');
  require('./diag');
}

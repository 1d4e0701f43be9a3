/**
 * What `bin/broker` and `bin/broker-agent` run: the bundle's entry point
 * (`dist/cli.bundle.js`, built from here by `scripts/bundle.js`, loaded by
 * `load-bundle.ts`). Without a bundle the same module runs unbundled from dist/.
 */
export { agentMain, brokerMain, loadCommands } from './main';
export { applyProcessTuning } from '../transport/process-tuning';
export { setCodeOrigin } from './code-origin';

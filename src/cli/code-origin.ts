/**
 * How the running CLI's code was loaded (`load-bundle.ts` sets it): from the bundle
 * with its V8 code cache, without it (and why), or from separate files. `broker
 * serve` reports it in its `listening` line, beside the process tuning: a start
 * that is slower than it should be (V8 flags in NODE_OPTIONS, a node upgrade
 * without a rebuild) shows there.
 */
import type { LoadedFrom } from './load-bundle';

let origin: LoadedFrom = 'files';

export function setCodeOrigin(from: LoadedFrom): void {
  origin = from;
}

export function codeOrigin(): LoadedFrom {
  return origin;
}

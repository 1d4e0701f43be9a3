/**
 * ssh2's `Channel.destroy()` is `end(); close()`. Node calls `destroy()` itself after
 * 'finish' (autoDestroy), and so do relays once both directions are done, so on
 * nearly every stream `end()` runs on a channel that has already finished. Node's
 * `Writable.end()` then builds an ERR_STREAM_ALREADY_FINISHED error, stack trace
 * included, and drops it: 3-5 % of each process's CPU when opening many short
 * streams (CPU profiles in docs/performance.md).
 *
 * The patched `destroy()` calls `end()` only when it would do something (the
 * writable side is neither ending nor errored), then `close()` as before.
 */
import type { Duplex } from 'node:stream';

const PATCHED = Symbol.for('remote-assist.channelDestroy');

interface ChannelProto {
  destroy: ((this: Duplex & { close(): void }) => unknown) & { [PATCHED]?: true };
}

/** Patch ssh2's Channel prototype once; false if already patched or ssh2 is not as expected. */
export function patchChannelDestroy(): boolean {
  let proto: ChannelProto;
  try {
    proto = (require('ssh2/lib/Channel') as { Channel: { prototype: ChannelProto } }).Channel.prototype;
  } catch {
    return false;
  }
  if (typeof proto.destroy !== 'function' || proto.destroy[PATCHED] || !/this\.end\(\);\s*this\.close\(\);/.test(String(proto.destroy))) return false;
  const destroy = function destroy(this: Duplex & { close(): void }) {
    const w = (this as unknown as { _writableState?: { ending?: boolean; errored?: unknown } })._writableState;
    if (!w || !(w.ending || w.errored)) this.end();
    this.close();
    return this;
  } as ChannelProto['destroy'];
  destroy[PATCHED] = true;
  proto.destroy = destroy;
  return true;
}

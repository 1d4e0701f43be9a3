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

/** ssh2's Channel module, or undefined if it cannot be loaded (then nothing is patched). */
function channelModule(): { Channel: { prototype: Duplex }; MAX_WINDOW?: unknown } | undefined {
  try {
    return require('ssh2/lib/Channel') as { Channel: { prototype: Duplex }; MAX_WINDOW?: unknown };
  } catch {
    return undefined;
  }
}

interface ChannelProto {
  destroy: ((this: Duplex & { close(): void }) => unknown) & { [PATCHED]?: true };
}

/** Patch ssh2's Channel prototype once; false if already patched or ssh2 is not as expected. */
export function patchChannelDestroy(): boolean {
  const proto = channelModule()?.Channel.prototype as ChannelProto | undefined;
  if (!proto) return false;
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

/**
 * ssh2 re-grants a channel's receive window only once half of it (1 MiB) is used,
 * so up to 1 MiB of credit waits at the receiver: over a link with a round trip R
 * a stream moves about 1 MiB per R instead of 2. Through the emulated WAN (20 ms
 * per leg) one download ran at 51-69 MiB/s against OpenSSH's 80, whose channels
 * re-grant once 3 packets are used. The patched `push()` re-grants as soon as
 * `WINDOW_REGRANT_STEP` bytes (4 packets) are used, under ssh2's own condition
 * (the readable buffer had room), so what a channel may hold is unchanged:
 * 77 MiB/s. `BROKER_WINDOW_STEP=0` keeps ssh2's rule.
 */
export const WINDOW_REGRANT_STEP = Math.max(0, Number(process.env.BROKER_WINDOW_STEP ?? 128 * 1024) || 0);

const REGRANT = Symbol.for('remote-assist.channelRegrant');

let maxWindow: number | undefined;

/**
 * ssh2's fixed channel window (its `MAX_WINDOW`: 2 MiB in the versions we know).
 * Read on first use, not when this module loads: loading ssh2's Channel loads its
 * protocol code, which binds `crypto.randomFillSync` for good, and process tuning
 * imports this module before it installs the padding pool there.
 */
export function ssh2MaxWindow(): number {
  if (maxWindow === undefined) {
    const w = channelModule()?.MAX_WINDOW;
    maxWindow = typeof w === 'number' ? w : 2 * 1024 * 1024;
  }
  return maxWindow;
}

interface ReceivingChannel {
  incoming: { window: number };
  outgoing: { id: number; state: string };
  _client: { _protocol: { channelWindowAdjust(id: number, amount: number): unknown } };
}

/** Patch ssh2's Channel prototype once; false if already patched, disabled, or ssh2 is not as expected. */
export function patchChannelRegrant(step: number = WINDOW_REGRANT_STEP): boolean {
  const mod = channelModule();
  if (!mod) return false;
  const proto = mod.Channel.prototype as Duplex & { [REGRANT]?: true };
  const max = mod.MAX_WINDOW;
  const ownPush = Object.prototype.hasOwnProperty.call(proto, 'push') && !(proto.push as { [OVERRUN]?: true })[OVERRUN];
  if (step <= 0 || typeof max !== 'number' || step >= max || proto[REGRANT] || ownPush) return false;
  const push = proto.push;
  proto.push = function pushAndRegrant(this: Duplex & ReceivingChannel, chunk: unknown, encoding?: BufferEncoding): boolean {
    const room = push.call(this, chunk, encoding);
    if (!room || chunk === null) return room;
    const used = max - this.incoming.window;
    if (used >= step && this.outgoing.state !== 'closed') {
      this.incoming.window = max;
      this._client._protocol.channelWindowAdjust(this.outgoing.id, used);
    }
    return room;
  };
  proto[REGRANT] = true;
  return true;
}

const OVERRUN = Symbol.for('remote-assist.channelOverrun');
const OVERRAN = Symbol('sentPastWindow');

/** Was `stream` an ssh2 channel closed because its peer sent past its window (`patchChannelOverrun`)? */
export function sentPastWindow(stream: Duplex): boolean {
  return (stream as { [OVERRAN]?: true })[OVERRAN] === true;
}

/**
 * ssh2 drops a data packet only when the channel's receive window is exactly 0. A
 * packet larger than what is left makes the window negative, and from then on every
 * packet is accepted: a peer that ignores its window (a hostile or broken device or
 * helper) could make us buffer without bound. Measured on the broker, a raw agent
 * sending 20,000-byte packets past a 64 KiB window while the helper did not read:
 * RSS +141 MB for 120 MB sent. The patched `push()` closes a channel whose peer sent
 * more than it was granted and drops the data (no 'error' event: a channel without
 * a listener would take the process down with it). Not a tuning: every process that
 * speaks SSH installs it (`connectSsh`, the broker's server).
 */
export function patchChannelOverrun(): boolean {
  const proto = channelModule()?.Channel.prototype as (Duplex & { [OVERRUN]?: true }) | undefined;
  if (!proto) return false;
  if (proto[OVERRUN]) return false;
  const push = proto.push;
  const guarded = function pushWithinWindow(this: Duplex & { incoming?: { window?: number } }, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk !== null && (this.incoming?.window ?? 0) < 0) {
      const ch = this as Duplex & { [OVERRAN]?: true };
      if (!ch[OVERRAN] && !ch.destroyed) ch.destroy(); // once: later packets are only dropped
      ch[OVERRAN] = true;
      return false;
    }
    return push.call(this, chunk, encoding);
  } as Duplex['push'] & { [OVERRUN]?: true };
  guarded[OVERRUN] = true;
  proto.push = guarded;
  proto[OVERRUN] = true;
  return true;
}

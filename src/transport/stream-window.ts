/**
 * A smaller receive window for bulk-capable tunnel channels.
 *
 * ssh2 grants every channel a fixed 2 MiB window. When the broker is the slowest
 * stage of a download, up to 2 MiB of that stream waits in the kernel buffers of
 * the device's SSH connection, and every other stream on that connection (another
 * helper's tiny request, a new connection's handshake) queues behind it. Capping
 * the credit we re-grant keeps at most `cap` bytes of any one stream in flight,
 * so small streams pass bulk ones quickly.
 *
 * How: ssh2 re-grants by adding to `incoming.window` and then calling the
 * protocol's `channelWindowAdjust(id, amount)`. For capped channels we shrink that
 * amount so the peer's credit never exceeds `cap` (keeping ssh2's accounting equal
 * to what the peer was really granted), re-grant only once half the cap is
 * spent (one adjust per cap/2 bytes, not one per packet), and lower the channel's readable buffer
 * to `cap` so user-space buffering is bounded too. The first 2 MiB granted at
 * channel open is spent once; from then on the cap holds. If ssh2's internals
 * differ from what this expects, nothing is changed.
 */
import type { Duplex } from 'node:stream';

/** Default cap (BROKER_STREAM_WINDOW bytes; 0 keeps ssh2's 2 MiB). */
export const STREAM_WINDOW = Math.max(0, Number(process.env.BROKER_STREAM_WINDOW ?? 128 * 1024) || 0);

interface ChannelInternals {
  incoming: { window: number };
  outgoing: { id: number };
  _client?: { _protocol?: ProtocolInternals };
  _readableState?: { highWaterMark: number };
}

interface ProtocolInternals {
  channelWindowAdjust?: (recipient: number, amount: number) => unknown;
  [CAPS]?: Map<number, { ch: ChannelInternals; cap: number }>;
}

const CAPS = Symbol('windowCaps');
/** Re-grant once the peer's credit falls to this fraction of the cap: one adjust per cap/2 bytes. */
const REGRANT_AT = 0.5;

/** Cap how much unconsumed data the peer may send on `channel` (an ssh2 channel). */
export function capReceiveWindow(channel: Duplex, cap: number = STREAM_WINDOW): void {
  const ch = channel as unknown as ChannelInternals;
  const proto = ch._client?._protocol;
  if (cap <= 0 || !proto || typeof proto.channelWindowAdjust !== 'function' || typeof ch.incoming?.window !== 'number') return;
  let caps = proto[CAPS];
  if (!caps) {
    const registry = new Map<number, { ch: ChannelInternals; cap: number }>();
    caps = registry;
    proto[CAPS] = registry;
    const original = proto.channelWindowAdjust;
    proto.channelWindowAdjust = function capped(this: unknown, recipient: number, amount: number) {
      const entry = registry.get(recipient);
      if (entry) {
        const granted = entry.ch.incoming.window - amount; // the peer's real credit before this adjust
        // ssh2 calls this on every data packet once below its 1 MiB threshold (always, under a cap):
        // re-grant only when half the cap is spent, so the device leg carries one small
        // WINDOW_ADJUST per cap/2 bytes instead of one per 32 KiB packet.
        const wanted = granted > entry.cap * REGRANT_AT ? 0 : entry.cap - granted;
        entry.ch.incoming.window = granted + wanted;
        if (wanted === 0) return undefined;
        amount = wanted;
      }
      return original.call(this, recipient, amount);
    };
  }
  const id = ch.outgoing.id;
  caps.set(id, { ch, cap });
  if (ch._readableState) ch._readableState.highWaterMark = Math.min(ch._readableState.highWaterMark, cap);
  channel.once('close', () => {
    if (caps.get(id)?.ch === ch) caps.delete(id);
  });
}

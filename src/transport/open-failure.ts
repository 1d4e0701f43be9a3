/**
 * ssh2's `reject()` for incoming channels always answers CONNECT_FAILED with an
 * empty description. Stock OpenSSH clients print the reason and description of a
 * failed open (`open failed: administratively prohibited: ...`), which is the only
 * diagnostic `ssh -W` / `ssh -D` users get, so we send the real ones.
 *
 * This swaps the protocol's `channelOpenFail` for the duration of the synchronous
 * `reject()` call, so ssh2's own bookkeeping (channel id release) still runs.
 * If ssh2's internals ever change shape, it falls back to a plain `reject()`.
 */
import type { Connection } from 'ssh2';
import type { OpenFailureReason } from '../errors';

interface ProtocolLike {
  channelOpenFail?: (recipient: number, reason: number, description: string) => void;
}

/** Reject an incoming channel with an explicit RFC 4254 reason code and one-line description. */
export function rejectChannel(conn: Connection, reject: () => void, reason: OpenFailureReason, description: string): void {
  const proto = (conn as unknown as { _protocol?: ProtocolLike })._protocol;
  const original = proto?.channelOpenFail;
  if (!proto || typeof original !== 'function') {
    reject();
    return;
  }
  const text = description.replace(/[\r\n]+/g, ' ').slice(0, 400);
  proto.channelOpenFail = (recipient: number) => original.call(proto, recipient, reason, text);
  try {
    reject();
  } finally {
    proto.channelOpenFail = original;
  }
}

/**
 * Channel-open failures that say why, in both directions.
 *
 * Sending: ssh2's `reject()` for incoming channels always answers CONNECT_FAILED
 * with an empty description. Stock OpenSSH clients print the reason and description
 * of a failed open (`open failed: administratively prohibited: ...`), which is the
 * only diagnostic `ssh -W` / `ssh -D` users get, so we send the real ones; our own
 * peers put `BRK_CODE: reason` there. `rejectChannel` swaps the protocol's
 * `channelOpenFail` for the duration of the synchronous `reject()` call, so ssh2's
 * own bookkeeping (channel id release) still runs. If ssh2's internals ever change
 * shape, it falls back to a plain `reject()`.
 *
 * Receiving: `openFailureError` turns such a failure back into the typed error it
 * describes (the broker's refusals on a helper's leg, the device's on the device leg),
 * and `awaitNamedOpen` waits for an open that names its target, as both legs send
 * them, with a deadline.
 */
import type { Duplex } from 'node:stream';
import type { Client, Connection } from 'ssh2';
import { BrokerError, describeError, isBrokerErrorCode, OpenFailure, type OpenFailureReason } from '../errors';
import { formatTarget, type Target } from '../protocol/target';
import type { CancelSignal } from './early-close';

interface ProtocolLike {
  channelOpenFail?: (recipient: number, reason: number, description: string) => void;
}

/** Reject an incoming channel with an explicit RFC 4254 reason code and one-line description. */
export function rejectChannel(conn: Connection | Client, reject: () => void, reason: OpenFailureReason, description: string): void {
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

/** `peer`'s open failure for a stream to `target` as the typed error it describes (`BRK_CODE: reason`). */
export function openFailureError(err: unknown, target: Target, peer = 'the broker'): BrokerError {
  const e = err as { message?: unknown; reason?: unknown };
  const message = typeof e.message === 'string' ? e.message : describeError(err);
  const text = message.replace(/^\(SSH\) Channel open failure: /, '');
  const coded = /^(BRK_[A-Z_]+): (.+)$/.exec(text);
  if (coded && isBrokerErrorCode(coded[1])) return new BrokerError(coded[1], coded[2]!, { cause: err });
  // Not from our software (or its description was lost): say what SSH said.
  const label = formatTarget(target);
  if (e.reason === OpenFailure.ADMINISTRATIVELY_PROHIBITED) return new BrokerError('BRK_POLICY_DENIED', `${label}: ${peer} refused the stream${text ? ` (${text})` : ''}`, { cause: err });
  if (e.reason === OpenFailure.RESOURCE_SHORTAGE) return new BrokerError('BRK_RATE_LIMITED', `${label}: ${peer} is out of resources${text ? ` (${text})` : ''}`, { cause: err });
  return new BrokerError('BRK_INTERNAL', `${label}: ${peer} could not open a stream: ${text || 'no reason given'}`, { cause: err });
}

/**
 * Wait for a channel open that names `target` (`open()` starts it): the channel once
 * `peer` confirmed it, else the typed error of its refusal (a BrokerError from
 * `open()` passes as it is), BRK_TIMEOUT after `timeoutMs`, or the abort reason. A
 * channel confirmed after the caller stopped waiting is closed at once.
 */
export function awaitNamedOpen<T extends Duplex>(
  open: () => Promise<T>,
  target: Target,
  opts: { timeoutMs: number; peer: string; signal?: CancelSignal },
): Promise<T> {
  const { signal } = opts;
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      fn();
      return true;
    };
    const onAbort = () => settle(() => {
      const reason: unknown = signal?.reason;
      reject(reason instanceof BrokerError ? reason : new BrokerError('BRK_INTERNAL', `${formatTarget(target)}: aborted`, { cause: reason }));
    });
    const timer = setTimeout(() => settle(() => {
      reject(new BrokerError('BRK_TIMEOUT', `${formatTarget(target)}: ${opts.peer} did not answer within ${opts.timeoutMs} ms`));
    }), opts.timeoutMs);
    timer.unref();
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    open().then(
      (ch) => { if (!settle(() => resolve(ch))) ch.destroy(); },
      (err: unknown) => { settle(() => reject(err instanceof BrokerError ? err : openFailureError(err, target, opts.peer))); },
    );
  });
}

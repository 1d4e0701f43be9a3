/**
 * Serves one named `forwarded-tcpip` open from the broker (`protocol/named-open.ts`):
 * dial from the device under the device's own policy, then accept the channel and
 * relay, or refuse it with the exact outcome (`BRK_CODE: reason`), which the broker
 * hands on to the helper. Nothing is accepted before the dial succeeded, so a
 * refused stream costs the device leg two packets and no channel.
 */
import type { Duplex } from 'node:stream';
import { BrokerError, describeError } from '../errors';
import { formatTarget, type Target } from '../protocol/target';
import { relay } from '../transport/relay';
import { dialTarget, type DialOptions } from './dial';
import type { StreamReport } from './socks-responder';

export interface NamedResponderOptions extends DialOptions {
  /** Called once the outcome is known (before the relay). */
  onOpen?: (report: StreamReport) => void;
}

/**
 * Dial `target` for `helper`; on success `accept()` the channel (undefined when the
 * SSH connection went away meanwhile) and relay, else `refuse(error)`. Resolves when
 * the stream is over. Never throws.
 */
export async function serveNamedOpen(
  helper: number,
  target: Target,
  accept: () => Duplex | undefined,
  refuse: (err: BrokerError) => void,
  opts: NamedResponderOptions,
): Promise<StreamReport> {
  let socket;
  try {
    socket = await dialTarget(target, opts);
  } catch (err) {
    const e = err instanceof BrokerError ? err : new BrokerError('BRK_INTERNAL', `${formatTarget(target)}: ${describeError(err)}`, { cause: err });
    refuse(e);
    const report = { helper, target, rep: e.socksReply, reason: e.message };
    opts.onOpen?.(report);
    return report;
  }
  let channel: Duplex | undefined;
  try {
    channel = accept();
  } catch {
    channel = undefined;
  }
  if (!channel) {
    socket.destroy();
    const report = { helper, target, rep: 0x01, reason: 'the broker connection closed before the stream was accepted' };
    opts.onOpen?.(report);
    return report;
  }
  const report: StreamReport = { helper, target, rep: 0, reason: 'succeeded' };
  opts.onOpen?.(report);
  report.result = await relay(channel, socket);
  return report;
}

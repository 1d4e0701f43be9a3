/**
 * Routing one helper stream to its session's device: the early policy check (so
 * helpers fail fast), the SOCKS handshake through the reverse tunnel, the relay,
 * and one audit line per stream (who, which session, where, outcome, bytes, time).
 */
import type { Duplex } from 'node:stream';
import { BrokerError, describeError, fromSocksReply, socksReplyMessage } from '../errors';
import type { Logger } from '../log';
import { formatTarget, type Target } from '../protocol/target';
import { relay } from '../transport/relay';
import { sentPastWindow } from '../transport/ssh2-channel';
import type { AgentStream } from './agent-link';
import type { BrokerMetrics } from './metrics';
import type { HelperLink, Session } from './sessions';

export interface RouteOutcome {
  /** SOCKS5 reply byte the device (or the broker's early check) gave. */
  rep: number;
  reason: string;
  stream?: AgentStream;
  /** Time from the request to the device's answer. */
  openSeconds: number;
}

/** Check the descriptor, then ask the device to connect. Never throws: failures come back as a reply code. */
export async function openRoute(session: Session, helper: HelperLink, target: Target): Promise<RouteOutcome> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const decision = session.policy.checkRequest(target);
  if (!decision.allowed) return { rep: 0x02, reason: decision.reason, openSeconds: seconds() };
  if (session.ended) return { rep: 0x03, reason: 'the session has ended', openSeconds: seconds() };
  try {
    const stream = await session.agent.openStream(target, { helperId: helper.info.id, address: helper.info.address.replace(/:\d+$/, '') });
    return { rep: stream.rep, reason: stream.reason, stream, openSeconds: seconds() };
  } catch (err) {
    const e = err instanceof BrokerError ? err : new BrokerError('BRK_INTERNAL', describeError(err));
    return { rep: e.socksReply, reason: e.message, openSeconds: seconds() };
  }
}

/** Relay an established route and write its audit line. */
export async function runRoute(
  session: Session,
  helper: HelperLink,
  target: Target,
  helperSide: Duplex,
  deviceSide: Duplex,
  log: Logger,
  via: string,
  metrics?: BrokerMetrics,
): Promise<void> {
  session.streams.add(helperSide);
  session.streams.add(deviceSide);
  const r = await relay(helperSide, deviceSide);
  session.streams.delete(helperSide);
  session.streams.delete(deviceSide);
  metrics?.streamClosed(r.aToB, r.bToA);
  const overran = sentPastWindow(deviceSide) ? 'device' : sentPastWindow(helperSide) ? 'helper' : undefined;
  if (overran) {
    metrics?.streamOverrun(overran);
    log.warn(`stream cut: the ${overran} sent more than its SSH window allowed`, {
      event: 'stream-overrun', session: session.redactedCode, helper: helper.info.id, via, dest: formatTarget(target),
    });
  }
  log.info('stream closed', {
    event: 'stream', session: session.redactedCode, helper: helper.info.id, via,
    dest: formatTarget(target), outcome: 'succeeded', sent: r.aToB, received: r.bToA, durationMs: r.durationMs,
  });
}

/** Audit line for a stream that never opened. */
export function auditRefused(log: Logger, session: Session, helper: HelperLink, target: Target, rep: number, reason: string, via: string): void {
  log.info('stream refused', {
    event: 'stream', session: session.redactedCode, helper: helper.info.id, via,
    dest: formatTarget(target), outcome: socksReplyMessage(rep), code: fromSocksReply(rep), reason,
  });
}

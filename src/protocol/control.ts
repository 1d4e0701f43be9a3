/**
 * The control channel: one `exec` channel per native agent (`expose`) and helper
 * (`describe`) carrying JSON lines. The agent sends one `expose` request (its
 * descriptor); the broker answers with events. Every line is size-limited and
 * schema-checked; anything else is refused with a message that says what was wrong.
 */
import { z } from 'zod';
import type { Readable, Writable } from 'node:stream';
import { BrokerError, isBrokerErrorCode, type BrokerErrorCode } from '../errors';
import { Limits, PROTOCOL_VERSION } from './constants';

/** A helper as the device and other helpers see it (never its address's secrets). */
export interface HelperInfo {
  id: number;
  fingerprint: string;
  address: string;
}

/** Why a session ended. */
export type EndReason = 'agent-gone' | 'agent-closed' | 'expired' | 'broker-shutdown' | 'closed-by-device';

/** Events the broker sends on control channels (and that `--json` prints). */
export type ControlEvent =
  | { event: 'session'; code: string; label?: string; broker: string; fingerprint: string; expiresAt?: string; helperCommand: string }
  | { event: 'hello'; version: number; descriptor: unknown; helper: HelperInfo; label?: string; helpers: number }
  | { event: 'helper-joined'; helper: HelperInfo; helpers: number }
  | { event: 'helper-left'; helper: HelperInfo; helpers: number; reason: string }
  | { event: 'session-ended'; reason: EndReason; message: string }
  | { event: 'error'; code: BrokerErrorCode; message: string };

/** The one request the agent sends on its control channel. */
export const ExposeRequestSchema = z.strictObject({
  type: z.literal('expose'),
  version: z.literal(PROTOCOL_VERSION),
  descriptor: z.unknown(),
});
export type ExposeRequest = z.infer<typeof ExposeRequestSchema>;

/** Encode one event as a JSON line. */
export function encodeEvent(ev: ControlEvent): string {
  return `${JSON.stringify(ev)}\n`;
}

/** Write one event if the stream is still writable. */
export function sendEvent(stream: Writable, ev: ControlEvent): void {
  if (!stream.writableEnded && !stream.destroyed) stream.write(encodeEvent(ev));
}

/**
 * Split a byte stream into lines with a hard per-line limit. Calls `onLine` for each
 * complete line and `onError` once if a line exceeds `maxBytes` (then stops reading).
 */
export function readLines(
  stream: Readable,
  onLine: (line: string) => void,
  onError: (err: BrokerError) => void,
  maxBytes: number = Limits.controlLineBytes,
): () => void {
  let buffered: Buffer[] = [];
  let size = 0;
  let stopped = false;
  const onData = (chunk: Buffer) => {
    let start = 0;
    for (let i = 0; i < chunk.length && !stopped; i++) {
      if (chunk[i] !== 0x0a) continue;
      buffered.push(chunk.subarray(start, i));
      const line = Buffer.concat(buffered).toString('utf8').replace(/\r$/, '');
      buffered = [];
      size = 0;
      start = i + 1;
      if (line.trim() !== '') onLine(line);
    }
    if (stopped) return;
    const rest = chunk.subarray(start);
    size += rest.length;
    if (size > maxBytes) {
      stop();
      onError(new BrokerError('BRK_BAD_REQUEST', `control line longer than ${maxBytes} bytes`));
      return;
    }
    if (rest.length) buffered.push(rest);
  };
  const stop = () => {
    stopped = true;
    stream.off('data', onData);
  };
  stream.on('data', onData);
  return stop;
}

/** Parse a JSON line into a plain object, or throw BRK_BAD_REQUEST naming the problem. */
export function parseJsonLine(line: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new BrokerError('BRK_BAD_REQUEST', `${what}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BrokerError('BRK_BAD_REQUEST', `${what}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Turn an `error` event from the wire back into a BrokerError. */
export function errorFromEvent(ev: Record<string, unknown>): BrokerError {
  const code = isBrokerErrorCode(ev.code) ? ev.code : 'BRK_INTERNAL';
  return new BrokerError(code, typeof ev.message === 'string' ? ev.message : 'broker reported an error');
}

/**
 * Read a client's control channel: the first event must be `firstEvent` (the
 * promise resolves with it) or an `error` (it rejects with that error); every
 * later event goes to `onEvent`. Malformed lines are skipped; a channel that
 * closes before the first event rejects.
 */
export function readControlEvents(
  channel: Readable,
  firstEvent: ControlEvent['event'],
  onEvent: (ev: Record<string, unknown>) => void,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let first = true;
    readLines(channel, (line) => {
      let ev: Record<string, unknown>;
      try { ev = parseJsonLine(line, 'broker event'); } catch { return; }
      if (!first) return onEvent(ev);
      first = false;
      if (ev.event === firstEvent) resolve(ev);
      else reject(ev.event === 'error' ? errorFromEvent(ev) : new BrokerError('BRK_INTERNAL', `unexpected first event from the broker (expected ${firstEvent})`));
    }, reject);
    channel.once('close', () => {
      if (first) reject(new BrokerError('BRK_INTERNAL', 'the broker closed the control channel before answering'));
    });
  });
}

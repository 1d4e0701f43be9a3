/**
 * Reading framed messages (SOCKS greeting, request, reply, ...) from a Node
 * stream without losing the bytes that follow them.
 *
 * Uses the 'readable' event + `stream.read()` rather than 'data' listeners:
 * removing a 'data' listener leaves the stream flowing and bytes get lost. Any
 * bytes after the message are put back with `stream.unshift()`, so the next
 * readMessage() or a later `pipe()` sees them. Works on net.Socket,
 * PassThrough/Duplex and ssh2 Channel streams.
 *
 * Preconditions: the stream is in paused mode (no 'data' listener, not piped)
 * and has no string encoding set. On rejection the bytes read so far are
 * consumed; the protocol is broken at that point and the caller should write
 * `err.reply` (if it is a SocksProtocolError with a reply) and close the stream.
 */
import type { Readable } from 'node:stream';
import { BrokerError } from '../errors';
import { Timeouts } from './constants';
import { SocksProtocolError, type Parse } from './socks5';

export { SocksProtocolError };

export interface ReadMessageOptions {
  /** Reject with BRK_TIMEOUT after this long; default Timeouts.socksHandshake. 0 or Infinity disables. */
  timeoutMs?: number;
  /** Reject with BRK_BAD_REQUEST once this many bytes arrived without a complete message; default 1024. */
  maxBytes?: number;
  /** Abort the read: rejects with signal.reason if it is a BrokerError, else BRK_INTERNAL "aborted". */
  signal?: AbortSignal;
  /** Names the message in error messages, e.g. 'SOCKS greeting'. */
  what?: string;
  /**
   * Wait this long for the *first* byte (pooled, pre-opened channels sit idle until
   * used); `timeoutMs` then applies from the first byte on. Default: no separate wait.
   */
  idleTimeoutMs?: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 1024;

/**
 * Reads one message with `parser` from `stream`, leaving any extra bytes unread
 * in the stream (stream.unshift) so a later pipe sees them.
 *
 * Rejects with:
 *  - the parser's error as a SocksProtocolError (with `.reply` when the parser
 *    gave bytes to send the peer) on an 'error' parse;
 *  - BrokerError('BRK_TIMEOUT') after `timeoutMs`;
 *  - BrokerError('BRK_BAD_REQUEST') if `maxBytes` arrive without a complete message;
 *  - BrokerError('BRK_BAD_REQUEST', '... closed before ...') if the stream ends,
 *    closes or errors first (the stream error is the `cause`);
 *  - signal.reason if it is a BrokerError, else BrokerError('BRK_INTERNAL', '... aborted'),
 *    when `signal` aborts.
 * Leaves no listeners or timers behind, whatever the outcome.
 */
export function readMessage<T>(
  stream: Readable,
  parser: (buf: Buffer) => Parse<T>,
  opts: ReadMessageOptions = {},
): Promise<T & { consumed: number }> {
  const what = opts.what ?? 'SOCKS message';
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const timeoutMs = opts.timeoutMs ?? Timeouts.socksHandshake;
  const signal = opts.signal;

  return new Promise<T & { consumed: number }>((resolve, reject) => {
    let acc: Buffer = Buffer.alloc(0);
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let waitingIdle = opts.idleTimeoutMs !== undefined;
    const arm = (ms: number): void => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      if (!(ms > 0 && Number.isFinite(ms))) return;
      timer = setTimeout(() => {
        fail(new BrokerError('BRK_TIMEOUT', `${what}: timed out after ${ms} ms (got ${acc.length} byte${acc.length === 1 ? '' : 's'})`));
      }, ms);
    };

    const abortError = (): BrokerError => {
      const reason: unknown = signal?.reason;
      if (reason instanceof BrokerError) return reason;
      return new BrokerError('BRK_INTERNAL', `${what}: aborted`, { cause: reason });
    };

    const cleanup = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      stream.removeListener('readable', onReadable);
      stream.removeListener('end', onEnd);
      stream.removeListener('close', onClose);
      stream.removeListener('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };

    const fail = (err: BrokerError): void => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(err);
    };

    const closedBefore = (how: string, cause?: unknown): BrokerError =>
      new BrokerError(
        'BRK_BAD_REQUEST',
        `${what}: connection ${how} before the message was complete (got ${acc.length} byte${acc.length === 1 ? '' : 's'})`,
        cause === undefined ? undefined : { cause },
      );

    function onReadable(): void {
      while (!settled) {
        const chunk: unknown = stream.read();
        if (chunk === null) return;
        if (!Buffer.isBuffer(chunk)) {
          fail(new BrokerError('BRK_INTERNAL', `${what}: stream yields ${typeof chunk}, not bytes (is an encoding set?)`));
          return;
        }
        if (acc.length === 0 && waitingIdle) {
          waitingIdle = false;
          arm(timeoutMs);
        }
        acc = acc.length === 0 ? chunk : Buffer.concat([acc, chunk]);
        let res: Parse<T>;
        try {
          res = parser(acc);
        } catch (err) {
          fail(new BrokerError('BRK_INTERNAL', `${what}: parser failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
          return;
        }
        if (res.state === 'ok') {
          settled = true;
          cleanup();
          const { state: _state, ...rest } = res;
          void _state;
          if (rest.consumed < acc.length) stream.unshift(acc.subarray(rest.consumed));
          resolve(rest as unknown as T & { consumed: number });
          return;
        }
        if (res.state === 'error') {
          const e = res.error;
          fail(
            e instanceof SocksProtocolError && e.reply === res.reply
              ? e
              : new SocksProtocolError(e.code, e.message, { cause: e, reply: res.reply }),
          );
          return;
        }
        if (acc.length >= maxBytes) {
          fail(new BrokerError('BRK_BAD_REQUEST', `${what}: ${acc.length} bytes without a complete message (limit ${maxBytes})`));
          return;
        }
      }
    }

    function onEnd(): void {
      fail(closedBefore('closed'));
    }
    function onClose(): void {
      fail(closedBefore('closed'));
    }
    function onError(err: unknown): void {
      fail(closedBefore('failed', err));
    }
    function onAbort(): void {
      fail(abortError());
    }

    if (signal?.aborted) {
      fail(abortError());
      return;
    }
    if (stream.destroyed || stream.readableEnded) {
      fail(closedBefore('closed'));
      return;
    }
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('close', onClose);
    stream.on('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    arm(waitingIdle ? (opts.idleTimeoutMs as number) : timeoutMs);
    // Bytes may already be buffered (e.g. left over from a previous readMessage).
    onReadable();
  });
}

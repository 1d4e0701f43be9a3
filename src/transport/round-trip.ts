/**
 * The round trip of an SSH connection's leg, timed with global requests.
 *
 * Stream windows sized by time (`stream-window.ts`) need the leg's round trip where
 * data arrives. The broker times the opens it makes to devices (answered by the device
 * itself). A device makes no opens (the broker opens every stream to it); a helper's
 * opens are answered only once the device has dialled, so they time both legs; and the
 * broker's windows for a helper's uploads need the helper's leg. So those ask:
 * `keepalive@openssh.com` with a reply wanted, the request ssh2 and OpenSSH send as
 * keepalive, which every SSH implementation answers (with a failure: it means nothing
 * to them).
 *
 * Replies to global requests come back in order and carry no id. On a client (ssh2's
 * `Client`) our callback joins ssh2's own reply queue in the same turn as the request.
 * A server (ssh2's `Connection`) sends no global requests but its keepalive pings, and
 * ignores their replies; there every ping is queued (ours with a callback, keepalives
 * without) and each reply takes the oldest. If ssh2's internals differ from what this
 * expects, nothing is timed and the windows stay ssh2's.
 */
import { noteRoundTrip } from './stream-window';

type Handler = (...args: unknown[]) => unknown;

interface ProtocolInternals {
  ping?: () => void;
  _handlers?: Record<string, Handler | undefined>;
  [PINGS]?: PingQueue;
}

interface ConnectionInternals {
  /** ssh2 Client: callbacks for replies to its global requests, in order. */
  _callbacks?: Array<(...args: unknown[]) => void>;
  _protocol?: ProtocolInternals;
  _sock?: { writable?: boolean };
  once?: (event: 'close', fn: () => void) => unknown;
}

/** A server connection's pings in flight, oldest first (undefined: a keepalive), and the callback for the next one. */
interface PingQueue {
  sent: Array<(() => void) | undefined>;
  next: (() => void) | undefined;
}

const PINGS = Symbol('pings');

/** Samples at the start (the fastest is what counts) and one per PERIOD_MS after. */
const FIRST_SAMPLES = 3;
const PERIOD_MS = 10_000;

/** Queue a server connection's pings so that replies find their callbacks. */
function serverPings(proto: ProtocolInternals): PingQueue | undefined {
  if (proto[PINGS]) return proto[PINGS];
  const ping = proto.ping;
  const handlers = proto._handlers;
  if (typeof ping !== 'function' || !handlers || typeof handlers !== 'object') return undefined;
  const queue: PingQueue = { sent: [], next: undefined };
  proto.ping = function pingQueued(this: unknown) {
    queue.sent.push(queue.next);
    queue.next = undefined;
    return ping.call(this);
  };
  for (const name of ['REQUEST_SUCCESS', 'REQUEST_FAILURE']) {
    const original = handlers[name];
    handlers[name] = function replied(this: unknown, ...args: unknown[]) {
      queue.sent.shift()?.();
      return original?.apply(this, args);
    };
  }
  proto[PINGS] = queue;
  return queue;
}

/**
 * Send one global request on `conn` (an ssh2 `Client` or server `Connection`) and
 * resolve with its round trip in ms, or undefined when it cannot be timed (no such
 * internals, connection gone, or no answer within `timeoutMs`).
 */
export function timeRoundTrip(conn: object, timeoutMs = 5000): Promise<number | undefined> {
  const c = conn as ConnectionInternals;
  const proto = c._protocol;
  if (!proto || typeof proto.ping !== 'function' || c._sock?.writable === false) return Promise.resolve(undefined);
  const callbacks = c._callbacks;
  const queue = Array.isArray(callbacks) ? undefined : serverPings(proto);
  if (!callbacks && !queue) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const asked = performance.now();
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    timer.unref();
    const answered = () => {
      clearTimeout(timer);
      resolve(performance.now() - asked);
    };
    if (callbacks) callbacks.push(answered);
    else queue!.next = answered;
    try {
      proto.ping!();
    } catch {
      if (callbacks) callbacks.pop();
      else queue!.next = undefined;
      clearTimeout(timer);
      resolve(undefined);
    }
  });
}

/**
 * Keep timing `conn`'s leg for its stream windows (`noteRoundTrip`) while it is
 * connected: FIRST_SAMPLES at once, then one every PERIOD_MS. Returns a stop function.
 */
export function watchRoundTrip(conn: object): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const sample = async (n: number): Promise<void> => {
    for (let i = 0; i < n && !stopped; i++) {
      const ms = await timeRoundTrip(conn);
      if (ms === undefined || stopped) return;
      noteRoundTrip(conn, ms);
    }
  };
  void sample(FIRST_SAMPLES).then(() => {
    if (stopped) return;
    timer = setInterval(() => void sample(1), PERIOD_MS);
    timer.unref();
  });
  const stop = () => {
    stopped = true;
    if (timer) clearInterval(timer);
  };
  (conn as ConnectionInternals).once?.('close', stop);
  return stop;
}

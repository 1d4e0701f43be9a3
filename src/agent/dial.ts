/**
 * The device's dialer: resolve the name here (on the device), check the agent's own
 * policy on every address actually dialled (so DNS rebinding, `::ffff:127.0.0.1`,
 * `0x7f.1` and `localhost` tricks cannot slip past), then connect with a timeout.
 * It is the only place the agent opens connections; a datagram path can sit beside it.
 */
import dns from 'node:dns/promises';
import net from 'node:net';
import { BrokerError, fromDialError } from '../errors';
import type { Policy } from '../policy/policy';
import { formatTarget, type Target } from '../protocol/target';

export interface DialOptions {
  policy: Policy;
  timeoutMs: number;
  /** Injected resolver (tests); defaults to the system resolver via dns.lookup. */
  lookup?: (host: string) => Promise<Array<{ address: string; family: number }>>;
  signal?: AbortSignal;
}

/** Connect to `target` from the device, or throw a BrokerError saying exactly what happened. */
export async function dialTarget(target: Target, opts: DialOptions): Promise<net.Socket> {
  const label = formatTarget(target);
  const deadline = Date.now() + opts.timeoutMs;
  let addresses: Array<{ address: string; family: number }>;
  if (target.kind === 'domain') {
    try {
      const lookup = opts.lookup ?? ((h: string) => dns.lookup(h, { all: true, verbatim: true }));
      addresses = await withTimeout(lookup(target.host), opts.timeoutMs, label);
    } catch (err) {
      throw fromDialError(err, label);
    }
    if (addresses.length === 0) throw new BrokerError('BRK_HOST_UNREACHABLE', `${label}: name has no addresses on the device`);
  } else {
    addresses = [{ address: target.host, family: target.kind === 'ipv6' ? 6 : 4 }];
  }

  // Policy on what will really be dialled; deny wins if nothing is allowed.
  const requestedName = target.kind === 'domain' ? target.host : undefined;
  const allowed: typeof addresses = [];
  let firstDenial: string | undefined;
  for (const a of addresses) {
    const d = opts.policy.checkDial(a.address, target.port, requestedName);
    if (d.allowed) allowed.push(a);
    else firstDenial ??= d.reason;
  }
  if (allowed.length === 0) throw new BrokerError('BRK_POLICY_DENIED', firstDenial ?? `${label} is not allowed by the device's policy`);

  let lastError: unknown;
  for (const a of allowed) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    try {
      return await connectOnce(a.address, target.port, remaining, opts.signal);
    } catch (err) {
      lastError = err;
    }
  }
  throw fromDialError(lastError ?? Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }), label);
}

function connectOnce(host: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    const onAbort = () => {
      socket.destroy();
      reject(Object.assign(new Error('aborted'), { code: 'ABORT_ERR' }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, label: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(Object.assign(new Error(`${label}: name lookup timed out`), { code: 'ETIMEDOUT' })), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });
}

/**
 * How the helper reads the broker's refusal of a stream: the open failure's
 * description carries `BRK_CODE: reason`; anything else (a stock server, a lost
 * description, a made-up code) becomes an honest, typed error. And how its opener
 * sizes its streams' windows: to its own leg, timed with pings (an open's answer comes
 * only once the device has dialled, so it also times the device's leg).
 */
import type { ServerChannel } from 'ssh2';
import { BrokerError, OpenFailure, toSocksReply } from '../../src/errors';
import { SshStreamOpener } from '../../src/helper/stream-opener';
import { sshPair } from './ssh-pair';
import { openFailureError } from '../../src/transport/open-failure';
import { makeTarget } from '../../src/protocol/target';
import { legDistance } from '../../src/transport/stream-window';
import { timeRoundTrip } from '../../src/transport/round-trip';

const target = makeTarget('printer.lan', 631);
/** What ssh2 hands the forwardOut callback on CHANNEL_OPEN_FAILURE. */
const sshError = (reason: number, description: string) => Object.assign(new Error(`(SSH) Channel open failure: ${description}`), { reason });

describe('openFailureError', () => {
  test.each([
    ['BRK_CONN_REFUSED', 'printer.lan:631: connection refused', 0x05],
    ['BRK_POLICY_DENIED', 'printer.lan:631 is not allowed by rule "deny *"', 0x02],
    ['BRK_HOST_UNREACHABLE', 'printer.lan: no route to host', 0x04],
    ['BRK_TIMEOUT', 'printer.lan:631: timed out after 10000 ms', 0x06],
    ['BRK_RATE_LIMITED', 'more than 4096 open channels on this connection', 0x02],
  ] as const)('%s from the broker keeps its code and reason', (code, reason, rep) => {
    const e = openFailureError(sshError(OpenFailure.CONNECT_FAILED, `${code}: ${reason}`), target);
    expect(e).toBeInstanceOf(BrokerError);
    expect(e.code).toBe(code);
    expect(e.message).toBe(reason);
    expect(toSocksReply(e.code)).toBe(rep);
  });

  test('a reason that itself contains "BRK_" and colons is kept whole', () => {
    const e = openFailureError(sshError(2, 'BRK_BAD_TARGET: "BRK_X: y" is not a host name'), target);
    expect(e.code).toBe('BRK_BAD_TARGET');
    expect(e.message).toBe('"BRK_X: y" is not a host name');
  });

  test('an unknown code is not trusted', () => {
    const e = openFailureError(sshError(2, 'BRK_MADE_UP: whatever'), target);
    expect(e.code).toBe('BRK_INTERNAL');
    expect(e.message).toContain('printer.lan:631: the broker could not open a stream: BRK_MADE_UP: whatever');
  });

  test('without a description: the SSH reason decides, and the message says none was given', () => {
    expect(openFailureError(sshError(OpenFailure.ADMINISTRATIVELY_PROHIBITED, ''), target).code).toBe('BRK_POLICY_DENIED');
    expect(openFailureError(sshError(OpenFailure.RESOURCE_SHORTAGE, ''), target).code).toBe('BRK_RATE_LIMITED');
    const e = openFailureError(sshError(OpenFailure.CONNECT_FAILED, ''), target);
    expect(e.code).toBe('BRK_INTERNAL');
    expect(e.message).toBe('printer.lan:631: the broker could not open a stream: no reason given');
  });

  test('a stock server\'s free text is passed on under BRK_INTERNAL', () => {
    const e = openFailureError(sshError(OpenFailure.CONNECT_FAILED, 'Connection refused'), target);
    expect(e.code).toBe('BRK_INTERNAL');
    expect(e.message).toContain('Connection refused');
  });

  test('not an Error at all', () => {
    const e = openFailureError('boom', target);
    expect(e).toBeInstanceOf(BrokerError);
    expect(e.code).toBe('BRK_INTERNAL');
  });
});

const MAX_WINDOW = 2 * 1024 * 1024;

test('a device slow to answer opens does not make a loopback leg look long: streams keep ssh2\'s window', async () => {
  const windows: number[] = [];
  // Each open is answered 60 ms late (a far device); pings are answered at once.
  const { client, close } = await sshPair((conn) => conn.on('tcpip', (accept) => setTimeout(() => {
    const ch: ServerChannel = accept();
    windows.push((ch as unknown as { outgoing: { window: number } }).outgoing.window);
    ch.end();
  }, 60)));
  try {
    for (let i = 0; i < 5; i++) await timeRoundTrip(client); // a cold process answers its first pings slowly
    const opener = new SshStreamOpener(client);
    const distances: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { stream } = await opener.open(makeTarget('127.0.0.1', 80));
      distances.push(legDistance(stream));
      stream.resume();
      stream.destroy();
    }
    // Timed from its opens, the leg would be 59 ms long. Timed by pings it is loopback:
    // 0, or a few ms when this machine was slow to answer a ping just then.
    for (const d of distances) expect(d).toBeLessThan(30);
    // The first stream opens before anything is timed; each later one with what the
    // pings said by then: ssh2's window on loopback, the cap (and what is in flight) if
    // a slow ping made the leg look long (CI machines under load).
    expect(windows).toHaveLength(3);
    expect(windows[0]).toBe(MAX_WINDOW);
    distances.slice(0, -1).forEach((d, i) => { if (d === 0) expect(windows[i + 1]).toBe(MAX_WINDOW); });
  } finally {
    close();
  }
});

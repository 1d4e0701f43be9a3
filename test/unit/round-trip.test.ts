import type { Client, Connection } from 'ssh2';
import { timeRoundTrip } from '../../src/transport/round-trip';
import { sshPair } from './ssh-pair';

/** A pair whose server answers forwardIn 20 ms late (keepalive@openssh.com it answers at once, with a failure, as any server does). */
const pair = () => sshPair((conn) => {
  conn.on('request', (accept, _reject, name) => { if (name === 'tcpip-forward') setTimeout(() => accept?.(4321), 20); });
});

test('a global request is timed, and replies to other global requests still reach their own callbacks', async () => {
  const { client, close } = await pair();
  try {
    // forwardIn's reply comes 20 ms late; the ping sent after it is answered after it, in order.
    const port = new Promise<number>((resolve, reject) => client.forwardIn('127.0.0.1', 0, (err, p) => (err ? reject(err) : resolve(p))));
    const ms = await timeRoundTrip(client);
    expect(await port).toBe(4321);
    expect(typeof ms).toBe('number');
    expect(ms!).toBeGreaterThanOrEqual(15);
    const alone = await timeRoundTrip(client);
    expect(alone!).toBeGreaterThanOrEqual(0);
  } finally {
    close();
  }
});

test('an object without ssh2\'s internals, or a closed connection, is not timed', async () => {
  expect(await timeRoundTrip({} as Client)).toBeUndefined();
  const { client, close } = await pair();
  close();
  await new Promise<void>((r) => client.once('close', () => r()));
  expect(await timeRoundTrip(client, 200)).toBeUndefined();
});

test('a server connection times its pings too, among its own keepalive pings, whose replies it otherwise ignores', async () => {
  let serverConn: Connection | undefined;
  const { close } = await sshPair((conn) => { serverConn = conn; }, { keepaliveInterval: 5, keepaliveCountMax: 1000 });
  try {
    const times: Array<number | undefined> = [];
    for (let i = 0; i < 10; i++) {
      times.push(await timeRoundTrip(serverConn!));
      await new Promise((r) => setTimeout(r, 7)); // keepalive pings go out between ours
    }
    expect(times.every((t) => typeof t === 'number' && t >= 0)).toBe(true);
  } finally {
    close();
  }
});

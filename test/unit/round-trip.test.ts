import net from 'node:net';
import { Client, Server } from 'ssh2';
import { generateIdentity } from '../../src/transport/keys';
import { timeRoundTrip } from '../../src/transport/round-trip';

/** A real ssh2 server (which answers keepalive@openssh.com with a failure, as any server does) and a client. */
async function pair() {
  const server = new Server({ hostKeys: [generateIdentity().privateKey] }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('error', () => {});
    conn.on('request', (accept, _reject, name) => { if (name === 'tcpip-forward') setTimeout(() => accept?.(4321), 20); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new Client();
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve()).once('error', reject);
    client.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, username: 'u' });
  });
  return { client, close: () => { client.end(); server.close(); } };
}

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
  let serverConn: import('ssh2').Connection | undefined;
  const server = new Server({ hostKeys: [generateIdentity().privateKey], keepaliveInterval: 5, keepaliveCountMax: 1000 }, (conn) => {
    serverConn = conn;
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new Client();
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve()).once('error', reject);
      client.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, username: 'u' });
    });
    const times: Array<number | undefined> = [];
    for (let i = 0; i < 10; i++) {
      times.push(await timeRoundTrip(serverConn!));
      await new Promise((r) => setTimeout(r, 7)); // keepalive pings go out between ours
    }
    expect(times.every((t) => typeof t === 'number' && t >= 0)).toBe(true);
  } finally {
    client.end();
    server.close();
  }
});

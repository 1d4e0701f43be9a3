/** A real ssh2 server on loopback that accepts anyone, and a client connected to it. */
import net from 'node:net';
import { Client, Server, type Connection, type ServerConfig } from 'ssh2';
import { generateIdentity } from '../../src/transport/keys';

export async function sshPair(onConnection: (conn: Connection) => void = () => {}, config: Partial<ServerConfig> = {}): Promise<{ client: Client; close: () => void }> {
  const server = new Server({ hostKeys: [generateIdentity().privateKey], ...config }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('error', () => {});
    onConnection(conn);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new Client();
  const close = () => { client.end(); server.close(); };
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve()).once('error', reject);
      client.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, username: 'u' });
    });
  } catch (err) {
    close();
    throw err;
  }
  return { client, close };
}

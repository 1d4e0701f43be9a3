/** Two ends of a real TCP connection on loopback, half-open allowed. */
import net from 'node:net';

export interface SocketPair {
  /** The connecting end (what a local client holds). */
  client: net.Socket;
  /** The accepted end (what a front-end hands on). */
  server: net.Socket;
  /** Destroy both ends and stop listening. */
  close: () => void;
}

export async function socketPair(): Promise<SocketPair> {
  const srv = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((r) => client.once('connect', r));
  const server = await accepted;
  return { client, server, close: () => { client.destroy(); server.destroy(); srv.close(); } };
}

/** Listening helpers shared by the helper's local front-ends (SOCKS, HTTP). */
import type net from 'node:net';
import { BrokerError } from '../errors';

/** Listen on `host:port`; a failure names the flag to change (`--socks`, `--http`). */
export function listenOn(server: net.Server, host: string, port: number, what: string, flag: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new BrokerError('BRK_BAD_OPTION', `cannot listen for ${what} on ${host}:${port}: ${err.code ?? err.message} (choose another ${flag}, or port 0 for any free port)`)));
    server.listen(port, host, () => resolve());
  });
}

/** The address a listening server is bound to. */
export function boundAddress(server: net.Server): { host: string; port: number } {
  const a = server.address() as net.AddressInfo;
  return { host: a.address, port: a.port };
}

/** Destroy `clients` and stop listening. Idempotent. */
export function stopServer(server: net.Server, clients: Iterable<{ destroy(): unknown }>): Promise<void> {
  for (const c of clients) c.destroy();
  return new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
}

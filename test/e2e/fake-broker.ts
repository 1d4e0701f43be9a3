/**
 * A fake broker for device-side tests: a raw ssh2 server that creates a session for
 * any agent (accepts its reverse tunnel, answers its expose request with a session)
 * and then lets the test open streams to the device as it likes.
 */
import net from 'node:net';
import { Server, type Connection } from 'ssh2';
import { generateIdentity } from '../../src/transport/keys';

export interface FakeBroker {
  port: number;
  conn: Promise<Connection>;
  /** The comments of the agent's SSH identification string. */
  identComments: Promise<string | undefined>;
  binding: Promise<{ addr: string; port: number }>;
  close(): Promise<void>;
}

/** A broker that creates a session for anyone and then misbehaves on demand. */
export async function startFakeBroker(): Promise<FakeBroker> {
  const hostKey = generateIdentity().privateKey; // re-parsed: ssh2's generator rarely emits a key it cannot load
  let resolveConn!: (c: Connection) => void;
  let resolveBinding!: (b: { addr: string; port: number }) => void;
  const conn = new Promise<Connection>((r) => { resolveConn = r; });
  let resolveComments!: (c: string | undefined) => void;
  const identComments = new Promise<string | undefined>((r) => { resolveComments = r; });
  const binding = new Promise<{ addr: string; port: number }>((r) => { resolveBinding = r; });
  const server = new Server({ hostKeys: [hostKey] }, (c, info) => {
    resolveComments(info.header.comments);
    c.on('authentication', (ctx) => ctx.accept());
    c.on('error', () => {});
    c.on('ready', () => {
      resolveConn(c);
      c.on('request', (accept, _reject, name, info) => {
        if (name === 'tcpip-forward') {
          const i = info as { bindAddr: string };
          accept?.(40000);
          resolveBinding({ addr: i.bindAddr, port: 40000 });
        } else accept?.();
      });
      c.on('session', (accept) => {
        const s = accept();
        s.on('exec', (acc) => {
          const ch = acc();
          ch.once('data', () => ch.write(`${JSON.stringify({ event: 'session', code: 'aaaaaaa-bbbbbbb-ccccccc', broker: 'x:1', fingerprint: 'SHA256:x', helperCommand: 'x' })}\n`));
        });
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port, conn, binding, identComments,
    close: () => new Promise<void>((r) => {
      void conn.then((c) => c.end());
      server.close(() => r());
    }),
  };
}

'use strict';
/**
 * One process of the "plain-node" variant: what three Node processes in our chain's
 * places cost with no SSH at all. No encryption, no multiplexing (each stream gets its
 * own TCP connection on every leg), no policy, no logging: the floor a Node design
 * of this shape can reach on this machine, beside OpenSSH and direct.
 *
 *   node plain-relay.js pipe PORT   accept on 127.0.0.1:0; pipe each connection to 127.0.0.1:PORT
 *   node plain-relay.js socks       accept on 127.0.0.1:0; answer SOCKS5 (no auth, CONNECT), dial, pipe
 *
 * Sends its port over IPC when listening. TCP_NODELAY on every socket, and the process
 * tuning our bin/ applies (V8 flags, glibc's trim threshold: src/transport/process-tuning.ts),
 * as both are open to any Node program; without the latter a plain relay pays a page
 * fault per 4 KiB reused on this kind of machine and moves less than ours.
 */
const net = require('node:net');
const tuning = require('../../dist/transport/process-tuning.js');

tuning.applyProcessTuning();

const [mode, portArg] = process.argv.slice(2);

function join(a, b) {
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
  a.pipe(b);
  b.pipe(a);
}

function pipeTo(port) {
  return (client) => {
    client.setNoDelay(true);
    const up = net.connect({ host: '127.0.0.1', port, noDelay: true });
    join(client, up);
  };
}

/** SOCKS5 with no authentication; CONNECT to IPv4, IPv6 or a name. Replies 0x05 on a failed dial. */
function socks(client) {
  client.setNoDelay(true);
  client.on('error', () => client.destroy());
  let buf = Buffer.alloc(0);
  let greeted = false;
  const onData = (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    if (!greeted) {
      if (buf.length < 2 || buf.length < 2 + buf[1]) return;
      if (buf[0] !== 5) { client.destroy(); return; }
      buf = buf.subarray(2 + buf[1]);
      greeted = true;
      client.write(Buffer.from([5, 0]));
    }
    if (buf.length < 5) return;
    const atyp = buf[3];
    const addrLen = atyp === 1 ? 4 : atyp === 4 ? 16 : atyp === 3 ? 1 + buf[4] : -1;
    if (buf[0] !== 5 || buf[1] !== 1 || addrLen < 0) { client.destroy(); return; }
    if (buf.length < 4 + addrLen + 2) return;
    const a = buf.subarray(4, 4 + addrLen);
    const host = atyp === 1 ? a.join('.') : atyp === 3 ? a.subarray(1).toString() : ipv6(a);
    const port = buf.readUInt16BE(4 + addrLen);
    const rest = buf.subarray(4 + addrLen + 2);
    client.off('data', onData);
    client.pause();
    const up = net.connect({ host, port, noDelay: true });
    up.once('error', () => { if (!client.destroyed) client.end(Buffer.from([5, 5, 0, 1, 0, 0, 0, 0, 0, 0])); });
    up.once('connect', () => {
      client.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
      if (rest.length) up.write(rest);
      join(client, up);
      client.resume();
    });
  };
  client.on('data', onData);
}

function ipv6(a) {
  const parts = [];
  for (let i = 0; i < 16; i += 2) parts.push(a.readUInt16BE(i).toString(16));
  return parts.join(':');
}

const server = net.createServer(mode === 'socks' ? socks : pipeTo(Number(portArg)));
server.listen(0, '127.0.0.1', () => {
  tuning.applyRunningTuning();
  process.send({ port: server.address().port });
});

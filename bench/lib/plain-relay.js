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
const socks5 = require('../../dist/protocol/socks5.js');

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

/**
 * SOCKS5 with no authentication, CONNECT only, parsed by the project's own parser
 * (dist/protocol/socks5.js, what every SOCKS server of ours uses). Replies 0x05 on a
 * failed dial; a malformed message gets the parser's reply, if any, and is cut.
 */
function socks(client) {
  client.setNoDelay(true);
  client.on('error', () => client.destroy());
  let buf = Buffer.alloc(0);
  let greeted = false;
  const refuse = (failed) => { if (failed.reply) client.end(failed.reply); else client.destroy(); };
  const onData = (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    if (!greeted) {
      const g = socks5.parseGreeting(buf);
      if (g.state === 'need-more') return;
      if (g.state === 'error') { refuse(g); return; }
      buf = buf.subarray(g.consumed);
      greeted = true;
      client.write(socks5.encodeMethodSelection(socks5.SocksMethod.NO_AUTH));
    }
    const r = socks5.parseRequest(buf);
    if (r.state === 'need-more') return;
    if (r.state === 'error') { refuse(r); return; }
    if (r.command !== socks5.SocksCommand.CONNECT) { client.end(socks5.encodeReply(0x07)); return; }
    const rest = buf.subarray(r.consumed);
    client.off('data', onData);
    client.pause();
    const up = net.connect({ host: r.target.host, port: r.target.port, noDelay: true });
    up.once('error', () => { if (!client.destroyed) client.end(socks5.encodeReply(0x05)); });
    up.once('connect', () => {
      client.write(socks5.encodeReply(0x00));
      if (rest.length) up.write(rest);
      join(client, up);
      client.resume();
    });
  };
  client.on('data', onData);
}

const server = net.createServer(mode === 'socks' ? socks : pipeTo(Number(portArg)));
server.listen(0, '127.0.0.1', () => {
  tuning.applyRunningTuning();
  process.send({ port: server.address().port });
});

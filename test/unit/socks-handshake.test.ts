/**
 * Both halves of the SOCKS5 CONNECT handshake on a pair of in-memory streams that
 * keep every write as its own chunk (as an SSH channel keeps each write as its own
 * packet): a pipelining client is answered in one write, a client that waits for
 * each answer gets it at once (no deadlock), failures keep the byte order a client
 * expects, and the requesting side reads answers sent together or one by one.
 */
import { Duplex } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { encodeAuthStatus, encodeUserPass } from '../../src/protocol/socks-auth';
import { acceptSocksConnect, answer, NOTHING_OWED, requestSocksConnect } from '../../src/protocol/socks-handshake';
import { encodeGreeting, encodeMethodSelection, encodeReply, encodeRequest, SocksMethod } from '../../src/protocol/socks5';
import { SocksProtocolError } from '../../src/protocol/socks-stream';
import { makeTarget } from '../../src/protocol/target';

/** One end of an in-memory connection; `writes` records each write() as the peer receives it. */
class End extends Duplex {
  peer!: End;
  readonly writes: Buffer[] = [];
  ended = false;
  override _read(): void { /* data is pushed by the peer */ }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writes.push(chunk);
    this.peer.push(chunk);
    cb();
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.ended = true;
    this.peer.push(null);
    cb();
  }
}

function pair(): [End, End] {
  const a = new End();
  const b = new End();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

const TARGET = makeTarget('printer.lan', 631);
const OPTS = { timeoutMs: 2000 };
const hex = (bufs: Buffer[]) => bufs.map((b) => b.toString('hex'));

describe('acceptSocksConnect', () => {
  test('pipelined greeting + request: nothing is written until the reply, then one write', async () => {
    const [server, client] = pair();
    client.write(Buffer.concat([encodeGreeting(), encodeRequest(TARGET)]));
    const request = await acceptSocksConnect(server, OPTS);
    expect(request).toMatchObject({ command: 1, target: TARGET });
    expect(server.writes).toEqual([]);
    expect(request!.owed).toEqual(encodeMethodSelection(SocksMethod.NO_AUTH));
    server.write(answer(request!, encodeReply(0)));
    expect(hex(server.writes)).toEqual([Buffer.concat([encodeMethodSelection(0), encodeReply(0)]).toString('hex')]);
  });

  test('pipelined greeting + label + request: selection, auth status and reply in one write', async () => {
    const [server, client] = pair();
    client.write(Buffer.concat([encodeGreeting([SocksMethod.USERNAME_PASSWORD]), encodeUserPass('helper-7'), encodeRequest(TARGET)]));
    const request = await acceptSocksConnect(server, { ...OPTS, acceptLabel: true });
    expect(request!.label).toBe('helper-7');
    expect(server.writes).toEqual([]);
    server.write(answer(request!, encodeReply(0)));
    expect(hex(server.writes)).toEqual([
      Buffer.concat([encodeMethodSelection(SocksMethod.USERNAME_PASSWORD), encodeAuthStatus(true), encodeReply(0)]).toString('hex'),
    ]);
  });

  test('a client that waits for each answer gets it at once (no deadlock)', async () => {
    const [server, client] = pair();
    const accepted = acceptSocksConnect(server, { ...OPTS, acceptLabel: true });
    client.write(encodeGreeting([SocksMethod.USERNAME_PASSWORD]));
    await tick();
    expect(hex(server.writes)).toEqual([encodeMethodSelection(SocksMethod.USERNAME_PASSWORD).toString('hex')]);
    client.write(encodeUserPass('helper-2'));
    await tick();
    expect(server.writes).toHaveLength(2);
    expect(server.writes[1]).toEqual(encodeAuthStatus(true));
    client.write(encodeRequest(TARGET));
    const request = await accepted;
    expect(request!.owed).toHaveLength(0);
    expect(answer(request!, encodeReply(5))).toEqual(encodeReply(5));
  });

  test('greeting and label together, request later: the answers go out before waiting for it', async () => {
    const [server, client] = pair();
    const accepted = acceptSocksConnect(server, { ...OPTS, acceptLabel: true });
    client.write(Buffer.concat([encodeGreeting([SocksMethod.USERNAME_PASSWORD]), encodeUserPass('helper-3')]));
    await tick();
    await tick();
    // the selection was held (the label had already come), the auth status then flushed both
    expect(hex(server.writes)).toEqual([Buffer.concat([encodeMethodSelection(2), encodeAuthStatus(true)]).toString('hex')]);
    client.write(encodeRequest(TARGET));
    expect((await accepted)!.owed).toHaveLength(0);
  });

  test('a bad request after a pipelined greeting: the selection still precedes the error reply', async () => {
    const [server, client] = pair();
    const bad = Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80]); // unknown address type
    client.write(Buffer.concat([encodeGreeting(), bad]));
    const err = await acceptSocksConnect(server, OPTS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocksProtocolError);
    server.write((err as SocksProtocolError).reply!);
    expect(Buffer.concat(server.writes)).toEqual(Buffer.concat([encodeMethodSelection(0), encodeReply(0x08)]));
  });

  test('a client that pipelines a partial request and closes: the selection is still sent first', async () => {
    const [server, client] = pair();
    client.write(Buffer.concat([encodeGreeting(), encodeRequest(TARGET).subarray(0, 6)]));
    client.end();
    await expect(acceptSocksConnect(server, OPTS)).rejects.toThrow(/SOCKS request: connection closed before the message was complete/);
    expect(hex(server.writes)).toEqual([encodeMethodSelection(0).toString('hex')]);
  });

  test('no acceptable method: 05 FF and the stream is ended', async () => {
    const [server, client] = pair();
    client.write(Buffer.concat([encodeGreeting([SocksMethod.USERNAME_PASSWORD]), encodeRequest(TARGET)]));
    await expect(acceptSocksConnect(server, OPTS)).resolves.toBeUndefined();
    expect(hex(server.writes)).toEqual(['05ff']);
    expect(server.ended).toBe(true);
  });

  test('answer() before any request is accepted writes just the reply', () => {
    const reply = encodeReply(1);
    expect(answer(NOTHING_OWED, reply)).toBe(reply);
    expect(answer(NOTHING_OWED, reply, Buffer.from('x\n'))).toEqual(Buffer.concat([reply, Buffer.from('x\n')]));
  });
});

describe('requestSocksConnect', () => {
  test('writes greeting, label and request in one write; reads answers sent together', async () => {
    const [server, client] = pair();
    const replied = requestSocksConnect(client, TARGET, { ...OPTS, peer: 'the device', label: 'helper-4' });
    expect(hex(client.writes)).toEqual([
      Buffer.concat([encodeGreeting([SocksMethod.USERNAME_PASSWORD]), encodeUserPass('helper-4'), encodeRequest(TARGET)]).toString('hex'),
    ]);
    const request = await acceptSocksConnect(server, { ...OPTS, acceptLabel: true });
    server.write(answer(request!, encodeReply(0, { host: '10.1.2.3', port: 4567 })));
    await expect(replied).resolves.toEqual({ rep: 0, bound: { host: '10.1.2.3', port: 4567 }, reason: 'succeeded' });
  });

  test('reads answers sent one by one (a stock server), byte by byte even', async () => {
    const [server, client] = pair();
    const replied = requestSocksConnect(client, TARGET, { ...OPTS, peer: 'the device', label: 'helper-4' });
    const all = Buffer.concat([encodeMethodSelection(2), encodeAuthStatus(true), encodeReply(0)]);
    for (const byte of all) {
      server.write(Buffer.from([byte]));
      await tick();
    }
    await expect(replied).resolves.toMatchObject({ rep: 0 });
  });

  test('bytes after the reply stay in the stream for the relay', async () => {
    const [server, client] = pair();
    const replied = requestSocksConnect(client, TARGET, { ...OPTS, peer: 'the broker' });
    server.write(Buffer.concat([encodeMethodSelection(0), encodeReply(0), Buffer.from('HTTP/1.1 200 OK')]));
    await replied;
    expect(client.read()).toEqual(Buffer.from('HTTP/1.1 200 OK'));
  });

  test('a failure reply comes back with the one-line reason after it', async () => {
    const [server, client] = pair();
    const replied = requestSocksConnect(client, TARGET, { ...OPTS, peer: 'the device' });
    server.end(Buffer.concat([encodeMethodSelection(0), encodeReply(5), Buffer.from('printer.lan:631: connection refused\nmore')]));
    await expect(replied).resolves.toMatchObject({ rep: 5, reason: 'printer.lan:631: connection refused' });
    expect(client.destroyed).toBe(true);
  });

  test('a server that picks another method, or refuses the label, is an internal error naming the peer', async () => {
    const [s1, c1] = pair();
    const r1 = requestSocksConnect(c1, TARGET, { ...OPTS, peer: 'the device' });
    s1.write(encodeMethodSelection(SocksMethod.USERNAME_PASSWORD));
    await expect(r1).rejects.toMatchObject({ code: 'BRK_INTERNAL', message: expect.stringContaining('the device chose SOCKS auth method 0x2') });

    const [s2, c2] = pair();
    const r2 = requestSocksConnect(c2, TARGET, { ...OPTS, peer: 'the device', label: 'helper-1' });
    s2.write(Buffer.concat([encodeMethodSelection(2), encodeAuthStatus(false)]));
    await expect(r2).rejects.toMatchObject({ code: 'BRK_INTERNAL', message: expect.stringContaining('the device refused the stream label') });
  });

  test('no answer in time: BRK_TIMEOUT', async () => {
    const [, client] = pair();
    await expect(requestSocksConnect(client, TARGET, { timeoutMs: 50, peer: 'the broker' })).rejects.toMatchObject({ code: 'BRK_TIMEOUT' });
  });
});

/**
 * Fast open: what the descriptor alone decides (answer now, wait for the device, refuse
 * now with the broker's own words), and, over a real ssh2 connection whose server plays
 * the broker's in-band SOCKS endpoint, that the client's first bytes reach the broker
 * before it has answered, that a success becomes a relayed stream, and that a failure
 * resets the client's connection and reports the exact reply.
 */
import type { Connection, ServerChannel } from 'ssh2';
import { BrokerError } from '../../src/errors';
import { FastOpener } from '../../src/helper/fast-open';
import { Policy } from '../../src/policy/policy';
import { SOCKS_STREAM_PATH } from '../../src/protocol/constants';
import { encodeReply } from '../../src/protocol/socks5';
import { acceptSocksConnect, answer, type SocksConnectRequest } from '../../src/protocol/socks-handshake';
import { makeTarget } from '../../src/protocol/target';
import { type SocketPair, socketPair } from './socket-pair';
import { sshPair } from './ssh-pair';

describe('FastOpener.judge', () => {
  const policy = Policy.fromRules(['127.0.0.1:8080', 'intranet.example:443', '10.0.0.0/8:22'], ['10.9.9.9']);
  const judge = (host: string, port: number) => {
    const fast = Object.create(FastOpener.prototype) as FastOpener;
    (fast as unknown as { policy: Policy }).policy = policy;
    return fast.judge(makeTarget(host, port));
  };

  test('a target allowed outright (address or name rule) is answered now', () => {
    expect(judge('127.0.0.1', 8080)).toBe('now');
    expect(judge('intranet.example', 443)).toBe('now');
    expect(judge('10.1.2.3', 22)).toBe('now');
  });

  test('a name allowed only if the device resolves it into an allowed range waits for the device', () => {
    expect(judge('build.lan', 22)).toBe('wait');
  });

  test('a denied target is refused now, with the code and reason the broker would give', () => {
    for (const [host, port] of [['127.0.0.1', 8081], ['10.9.9.9', 22], ['localhost', 8081], ['0x7f.1', 8081], ['elsewhere.example', 80]] as const) {
      const v = judge(host, port);
      expect(v).toBeInstanceOf(BrokerError);
      const d = policy.checkRequest(makeTarget(host, port));
      expect(d.allowed).toBe(false);
      expect((v as BrokerError).code).toBe('BRK_POLICY_DENIED');
      expect((v as BrokerError).message).toBe(d.allowed ? '' : d.reason);
      expect((v as BrokerError).socksReply).toBe(0x02);
    }
  });
});

describe('FastOpener.carry over ssh2', () => {
  /** The broker's side: in-band SOCKS on direct-streamlocal, answering as `respond` says. */
  function broker(respond: (ch: ServerChannel, seenBeforeAnswer: Buffer, request: SocksConnectRequest) => void) {
    return (conn: Connection) => {
      conn.on('openssh.streamlocal', (accept, reject, req) => {
        if (req.socketPath !== SOCKS_STREAM_PATH) return reject();
        const ch = accept();
        void acceptSocksConnect(ch, { timeoutMs: 5000, idleTimeoutMs: 60_000 }).then(async (request) => {
          if (!request) return;
          // Wait until the client's first bytes are here: they must come without an answer.
          const seen = await new Promise<Buffer>((resolve) => {
            const chunks: Buffer[] = [];
            const onData = (c: Buffer) => {
              chunks.push(c);
              if (Buffer.concat(chunks).includes('\n')) {
                ch.off('data', onData);
                ch.pause();
                resolve(Buffer.concat(chunks));
              }
            };
            ch.on('data', onData);
          });
          respond(ch, seen, request);
        }, () => ch.destroy());
      });
    };
  }

  /**
   * Run `body` with a FastOpener (targets `allow`ed) on an ssh2 connection whose server answers
   * as `respond` says, and a local client connection; everything is closed afterwards.
   */
  async function withFastOpener(
    respond: Parameters<typeof broker>[0],
    allow: string,
    body: (fast: FastOpener, local: SocketPair) => Promise<void>,
  ): Promise<void> {
    const pair = await sshPair(broker(respond));
    const local = await socketPair();
    const fast = new FastOpener(pair.client, Policy.fromRules([allow], []), 5000, 1);
    try {
      await body(fast, local);
    } finally {
      fast.close();
      local.close();
      pair.close();
    }
  }

  test('the first bytes reach the broker before its answer; a success relays both ways', async () => {
    // The fake broker answers only once it holds the client's first line: no answer without them.
    await withFastOpener((ch, seen, request) => {
      ch.write(answer(request, encodeReply(0)));
      ch.write(`echo ${seen.toString()}`);
      ch.on('data', (c: Buffer) => ch.write(`echo ${c.toString()}`));
      ch.once('end', () => ch.end());
      ch.resume();
    }, '127.0.0.1:80', async (fast, local) => {
      let opened = 0;
      const carried = fast.carry(local.server, makeTarget('127.0.0.1', 80), { onOpen: () => opened++ });
      local.client.write('hello\n'); // the client was told "succeeded" and talks at once
      const got: Buffer[] = [];
      local.client.on('data', (c: Buffer) => {
        got.push(c);
        if (Buffer.concat(got).toString() === 'echo hello\n') local.client.end('bye\n');
      });
      await new Promise((r) => local.client.once('close', r));
      const out = await carried;
      expect(Buffer.concat(got).toString()).toBe('echo hello\necho bye\n');
      expect(out).toMatchObject({ rep: 0, reason: 'succeeded', sent: 'hello\nbye\n'.length, received: 'echo hello\necho bye\n'.length });
      expect(opened).toBe(1);
    });
  }, 15_000);

  test('openEarly: a stream to write on at once; reads start after the answer, which is not passed on', async () => {
    await withFastOpener((ch, seen, request) => {
      ch.end(Buffer.concat([answer(request, encodeReply(0)), Buffer.from(`HTTP/1.1 200 OK (for ${seen.toString().trim()})\n`)]));
    }, '127.0.0.1:80', async (fast) => {
      const stream = await fast.openEarly(makeTarget('127.0.0.1', 80));
      stream.write('GET / HTTP/1.1\n'); // the fake broker answers only once it has this
      const got: Buffer[] = [];
      stream.on('data', (c: Buffer) => got.push(c));
      await new Promise((r) => stream.once('end', r));
      expect(Buffer.concat(got).toString()).toBe('HTTP/1.1 200 OK (for GET / HTTP/1.1)\n');
      stream.destroy();
    });
  }, 15_000);

  test('openEarly: a refusal destroys the stream with the exact error, nothing readable before it', async () => {
    await withFastOpener((ch, _seen, request) => {
      ch.end(answer(request, encodeReply(0x04), Buffer.from('printer.lan:80: the name does not resolve on the device\n')));
    }, 'printer.lan:80', async (fast) => {
      const stream = await fast.openEarly(makeTarget('printer.lan', 80));
      let read = 0;
      stream.on('data', (c: Buffer) => { read += c.length; });
      const failed = new Promise<Error>((r) => stream.once('error', r));
      stream.write('GET / HTTP/1.1\n');
      const err = await failed;
      expect(err).toBeInstanceOf(BrokerError);
      expect((err as BrokerError).code).toBe('BRK_HOST_UNREACHABLE');
      expect(err.message).toBe('printer.lan:80: the name does not resolve on the device');
      expect(read).toBe(0);
    });
  }, 15_000);

  test('a failure after the early answer resets the client and reports the exact reply and reason', async () => {
    await withFastOpener((ch, _seen, request) => {
      ch.end(answer(request, encodeReply(0x05), Buffer.from('127.0.0.1:80: connection refused by the target\n')));
    }, '127.0.0.1:80', async (fast, local) => {
      const carried = fast.carry(local.server, makeTarget('127.0.0.1', 80), { onOpen: () => { throw new Error('not opened'); } });
      const ended = new Promise<string>((resolve) => {
        local.client.on('error', (err: NodeJS.ErrnoException) => resolve(String(err.code)));
        local.client.once('end', () => resolve('clean end'));
      });
      local.client.write('GET / HTTP/1.0\n');
      expect(await ended).toBe('ECONNRESET');
      expect(await carried).toEqual({ rep: 0x05, reason: '127.0.0.1:80: connection refused by the target' });
    });
  }, 15_000);
});

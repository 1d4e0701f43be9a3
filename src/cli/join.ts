/** `broker-agent join CODE`: join a session, open the local SOCKS5 port, exit non-zero when the session ends. */
import { Helper } from '../helper/helper';
import { formatDescriptor } from '../protocol/descriptor';
import { eventText } from '../broker/text';
import { applyRunningTuning } from '../transport/process-tuning';
import { ExitCode, fail } from './exit';
import { type ClientArgs, clientConnection, clientOptions, listenOption } from './options';
import { Printer } from './printer';

export interface JoinArgs extends ClientArgs {
  code: string;
  socks: string;
  http: string;
  'fast-open': boolean;
}

export const joinOptions = {
  ...clientOptions,
  socks: { type: 'string', default: process.env.BROKER_SOCKS ?? '127.0.0.1:1080', describe: 'local SOCKS5 listen address (port 0 = any free port)' },
  http: { type: 'string', default: process.env.BROKER_HTTP ?? '127.0.0.1:3128', describe: 'local HTTP proxy listen address (port 0 = any free port; "off" = none)' },
  'fast-open': {
    type: 'boolean', default: process.env.BROKER_FAST_OPEN === '1',
    describe: 'answer SOCKS/CONNECT at once where the descriptor allows the target outright (one round trip less to the first byte); a device-side failure then resets the connection, and join prints the exact reason',
  },
} as const;

export async function runJoin(args: JoinArgs): Promise<void> {
  const out = new Printer(args.json);
  try {
    const conn = clientConnection(args, 'join');
    const broker = conn.broker;
    const helper = new Helper({
      ...conn,
      code: String(args.code),
      socks: listenOption('socks', args.socks, '127.0.0.1'),
      http: args.http === 'off' ? null : listenOption('http', args.http, '127.0.0.1'),
      fastOpen: args['fast-open'],
    });
    helper.on('new-host-key', (fp) => out.note(`first connection to ${broker}: remembered its host key ${fp}`));
    helper.on('event', (ev) => { if (ev.event !== 'session-ended') out.event(ev, eventText(ev)); });
    const resetNote = (reset?: boolean) => (reset ? ' (fast open: the client saw its connection reset)' : '');
    helper.on('http-stream', (s) => out.event({ event: 'http-stream', ...s }, `${s.method} ${s.target}: ${s.status}${s.reason ? ` ${s.reason}` : ''}${resetNote(s.reset)}`));
    helper.on('stream', (s) => out.event({ event: 'stream', ...s }, `${s.target}: ${s.rep === 0 ? `closed (sent ${s.sent} B, received ${s.received} B)` : s.reason}${resetNote(s.reset)}`));
    helper.on('ended', (err) => {
      out.event({ event: 'session-ended', code: err.code, message: err.message }, `${err.message}`);
      process.stderr.write(`broker-agent join: ${err.message} [${err.code}]\n`);
      process.exit(ExitCode.SESSION_ENDED);
    });
    const stop = () => { helper.close(); process.exit(ExitCode.OK); };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const ready = await helper.start();
    out.event({ event: 'ready', socks: ready.socks, socksUrl: ready.socksUrl, http: ready.http, httpProxyUrl: ready.httpProxyUrl, fastOpen: args['fast-open'], helper: ready.helper, descriptor: ready.descriptor }, [
      `Joined${ready.descriptor.label ? ` "${ready.descriptor.label}"` : ''} as helper #${ready.helper.id}.`,
      formatDescriptor(ready.descriptor),
      '',
      `SOCKS5 proxy: ${ready.socks}   e.g.  curl --socks5-hostname ${ready.socks} http://HOST/`,
      ...(ready.http ? [`HTTP proxy:   ${ready.http}   e.g.  curl -x http://${ready.http} http://HOST/`] : []),
      ...(args['fast-open'] ? ['Fast open: on (a connection the device cannot make is reset; the reason is printed here).'] : []),
      'Press Ctrl-C to leave.',
    ].join('\n'));
    out.flush(); // whoever started us waits for this line
    applyRunningTuning(); // joined: from here on, tuning for the traffic's code
  } catch (err) {
    fail('broker-agent join', err, args.json);
  }
}

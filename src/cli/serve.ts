/** `broker serve`: parse flags, start the broker, print where it listens, stop on SIGINT/SIGTERM. */
import { Broker } from '../broker/broker';
import { formatHostPort } from '../config';
import { createLogger, type LogFormat, type LogLevel } from '../log';
import { Defaults } from '../protocol/constants';
import { appliedProcessTuning, applyRunningTuning } from '../transport/process-tuning';
import { codeOrigin } from './code-origin';
import { fail } from './exit';
import { defaultDataDir, durationOption, listenOption } from './options';

export interface ServeArgs {
  listen: string;
  'data-dir'?: string;
  'public-address'?: string;
  metrics?: string;
  'check-interval': string;
  'log-format': LogFormat;
  'log-level': LogLevel;
}

export const serveOptions = {
  listen: { type: 'string', default: process.env.BROKER_LISTEN ?? Defaults.brokerListen, describe: 'SSH listen address HOST:PORT (* = every interface, IPv6 and IPv4; port 0 = any free port)' },
  'data-dir': { type: 'string', describe: 'where the host key lives (default $XDG_DATA_HOME/remote-assist-broker)' },
  'public-address': { type: 'string', describe: 'HOST:PORT printed in helper commands (default: the address each device connected to)' },
  'check-interval': { type: 'string', default: process.env.BROKER_CHECK_INTERVAL ?? '5s', describe: 'how often every device tunnel is checked' },
  metrics: { type: 'string', default: process.env.BROKER_METRICS, describe: 'serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9222; off by default)' },
  'log-format': { choices: ['json', 'pretty'] as const, default: 'pretty' as const, describe: 'log format; json prints a `listening` object first' },
  'log-level': { choices: ['error', 'warn', 'info', 'debug'] as const, default: 'info' as const },
} as const;

export async function runServe(args: ServeArgs): Promise<void> {
  const json = args['log-format'] === 'json';
  try {
    const listen = listenOption('listen', args.listen, '*');
    const log = createLogger({ format: args['log-format'], level: args['log-level'], scope: 'broker', stream: process.stdout });
    const broker = new Broker({
      host: listen.host === '*' ? undefined : listen.host, port: listen.port,
      dataDir: args['data-dir'] ?? defaultDataDir(),
      publicAddress: args['public-address'],
      metrics: args.metrics ? listenOption('metrics', args.metrics, '127.0.0.1') : undefined,
      checkIntervalMs: durationOption('check-interval', args['check-interval']),
      log,
    });
    await broker.start();
    applyRunningTuning(); // up: from here on, tuning for the traffic's code
    // Handle signals before saying we listen: whoever reads that line may stop us at once.
    const stop = (signal: string) => {
      log.info('shutting down', { signal });
      void broker.close().then(() => process.exit(0));
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    const a = broker.address();
    const ssh = formatHostPort(a.host, a.port);
    const m = broker.metricsAddr();
    const metrics = m ? formatHostPort(m.host, m.port) : undefined;
    if (json) process.stdout.write(`${JSON.stringify({ event: 'listening', ssh, fingerprint: broker.fingerprint, metrics, tuning: appliedProcessTuning(), code: codeOrigin() })}\n`);
    else process.stdout.write(`broker listening on ${ssh}\nhost key fingerprint ${broker.fingerprint}\n${metrics ? `metrics on http://${metrics}/metrics\n` : ''}`);
  } catch (err) {
    fail('broker', err, json);
  }
}

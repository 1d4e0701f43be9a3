/**
 * `broker-agent exec CODE -- COMMAND ARGS...`: join, open SOCKS and HTTP proxies on
 * free loopback ports, run COMMAND with the proxy variables set, forward its stdio
 * and signals, exit with its exit code, and leave nothing behind.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import { Helper } from '../helper/helper';
import { BrokerError } from '../errors';
import { fail } from './exit';
import { type ClientArgs, clientConnection, clientOptions } from './options';

export interface ExecArgs extends ClientArgs {
  code: string;
  command?: string[];
  '--'?: string[];
  _: (string | number)[];
}

export const execOptions = { ...clientOptions } as const;

/** Environment for a child that should use the tunnel (proxy variables in both cases, NO_PROXY cleared). */
export function proxyEnv(base: NodeJS.ProcessEnv, socksUrl: string, httpProxyUrl: string): NodeJS.ProcessEnv {
  const env = { ...base };
  for (const k of ['NO_PROXY', 'no_proxy']) delete env[k];
  Object.assign(env, {
    ALL_PROXY: socksUrl, all_proxy: socksUrl,
    HTTP_PROXY: httpProxyUrl, http_proxy: httpProxyUrl,
    HTTPS_PROXY: httpProxyUrl, https_proxy: httpProxyUrl,
  });
  return env;
}

export async function runExec(args: ExecArgs): Promise<void> {
  const command = [...(args.command ?? []), ...(args['--'] ?? [])].map(String);
  try {
    if (command.length === 0) throw new BrokerError('BRK_BAD_OPTION', 'missing COMMAND: broker-agent exec CODE --broker HOST:PORT -- curl http://10.0.0.5/');
    const helper = new Helper({
      ...clientConnection(args, 'exec'),
      code: String(args.code),
      socks: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 },
    });
    const ready = await helper.start();
    const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit', env: proxyEnv(process.env, ready.socksUrl, ready.httpProxyUrl!) });
    const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
    process.on('SIGINT', forward('SIGINT'));
    process.on('SIGTERM', forward('SIGTERM'));
    helper.on('ended', (err) => {
      process.stderr.write(`broker-agent exec: ${err.message} [${err.code}]\n`);
      child.kill('SIGTERM');
    });
    child.once('error', (err) => {
      helper.close();
      fail('broker-agent exec', new BrokerError('BRK_BAD_OPTION', `cannot run "${command[0]}": ${err.message}`), args.json);
    });
    child.once('exit', (code, signal) => {
      helper.close();
      process.exit(code ?? (signal ? 128 + (signalNumber(signal) ?? 1) : 1));
    });
  } catch (err) {
    fail('broker-agent exec', err, args.json);
  }
}

function signalNumber(sig: NodeJS.Signals): number | undefined {
  return os.constants.signals[sig];
}

/**
 * Shared option tables and flag → option mapping for the CLIs (yargs stays inside
 * cli/). Precedence: flags → BROKER_* environment → defaults.
 */
import os from 'node:os';
import path from 'node:path';
import { BrokerError } from '../errors';
import { parseDuration, parseListen } from '../config';
import { createLogger, type LogFormat, type LogLevel, type Logger } from '../log';
import { loadIdentity, type Identity } from '../transport/keys';
import { defaultKnownBrokersFile } from '../transport/known-brokers';

/** Parsed values of `clientOptions`. */
export interface ClientArgs {
  broker?: string;
  identity?: string;
  fingerprint?: string;
  'known-brokers'?: string;
  json: boolean;
  'log-format': LogFormat;
  'log-level': LogLevel;
}

/** What every client role needs to connect, built from the shared flags. */
export interface ClientConnection {
  broker: string;
  identity?: Identity;
  fingerprint?: string;
  knownBrokersFile: string;
  log: Logger;
}

/** Map the shared client flags onto connection options (loads --identity, creates the logger). */
export function clientConnection(args: ClientArgs, scope: string): ClientConnection {
  return {
    broker: requireBroker(args.broker),
    identity: args.identity ? loadIdentity(args.identity) : undefined,
    fingerprint: args.fingerprint,
    knownBrokersFile: args['known-brokers'] ?? defaultKnownBrokersFile(),
    log: createLogger({ format: args['log-format'], level: args['log-level'], scope }),
  };
}

/** Options every client command (expose, join) takes. */
export const clientOptions = {
  broker: { type: 'string', describe: 'broker SSH address HOST:PORT (env BROKER_ADDRESS)', default: process.env.BROKER_ADDRESS },
  identity: { type: 'string', describe: 'private key file (default: a fresh key in memory)' },
  fingerprint: { type: 'string', describe: "pin the broker's host key, SHA256:... (default: trust on first use)" },
  'known-brokers': { type: 'string', describe: 'trust-on-first-use file (default $XDG_CONFIG_HOME/remote-assist/known_brokers)' },
  json: { type: 'boolean', default: false, describe: 'print one JSON object per line on stdout' },
  'log-format': { choices: ['json', 'pretty'] as const, default: 'pretty' as const, describe: 'log format (logs go to stderr)' },
  'log-level': { choices: ['error', 'warn', 'info', 'debug'] as const, default: 'warn' as const, describe: 'log level' },
} as const;

/** Require --broker with a message that shows how. */
export function requireBroker(value: string | undefined): string {
  if (!value) throw new BrokerError('BRK_BAD_OPTION', 'missing --broker HOST:PORT (the address `broker serve` printed), or set BROKER_ADDRESS');
  return value;
}

/** Parse a listen flag; `name` is the flag for the message. */
export function listenOption(name: string, value: string, defaultHost: string): { host: string; port: number } {
  const l = parseListen(value, defaultHost);
  if (!l) throw new BrokerError('BRK_BAD_OPTION', `bad --${name} "${value}": expected HOST:PORT (port 0 = any free port), e.g. 127.0.0.1:1080`);
  return l;
}

/** Parse a duration flag (`5s`, `1500ms`, `2m`). */
export function durationOption(name: string, value: string | number): number {
  const ms = typeof value === 'number' ? value * 1000 : parseDuration(value);
  if (ms === null || ms <= 0) throw new BrokerError('BRK_BAD_OPTION', `bad --${name} "${value}": expected a duration such as 5s, 1500ms or 2m`);
  return ms;
}

/** Default data directory of the broker ($XDG_DATA_HOME/remote-assist-broker). */
export function defaultDataDir(env = process.env): string {
  const base = env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(base, 'remote-assist-broker');
}

/** `broker-agent expose`: build the descriptor from flags, expose, print the code and a live view. */
import { Agent } from '../agent/agent';
import { makeDescriptor, formatDescriptor } from '../protocol/descriptor';
import { eventText, stockHelperCommand } from '../broker/text';
import { applyRunningTuning } from '../transport/process-tuning';
import { ExitCode, fail } from './exit';
import { type ClientArgs, clientConnection, clientOptions, durationOption } from './options';
import { Printer } from './printer';

export interface ExposeArgs extends ClientArgs {
  allow?: string[];
  deny?: string[];
  label?: string;
  'max-helpers'?: number;
  expires?: string;
  'dial-timeout'?: string;
}

export const exposeOptions = {
  ...clientOptions,
  allow: { type: 'string', array: true, describe: 'what helpers may reach: CIDR | IP | HOST | *.DOMAIN, optional :PORTS (repeatable; default: private ranges)' },
  deny: { type: 'string', array: true, describe: 'what they may never reach (same syntax; deny beats allow)' },
  label: { type: 'string', describe: 'a name for this device, shown to helpers' },
  'max-helpers': { type: 'number', describe: 'most helpers at once' },
  expires: { type: 'string', describe: 'end the session after this long (e.g. 2h)' },
  'dial-timeout': { type: 'string', describe: 'connect timeout on the device (default 10s)' },
} as const;

export async function runExpose(args: ExposeArgs): Promise<void> {
  const out = new Printer(args.json);
  try {
    const conn = clientConnection(args, 'agent');
    const broker = conn.broker;
    const descriptor = makeDescriptor({
      label: args.label,
      allow: args.allow ?? [],
      deny: args.deny ?? [],
      maxHelpers: args['max-helpers'],
      expiresAt: args.expires ? new Date(Date.now() + durationOption('expires', args.expires)).toISOString() : undefined,
    });
    const agent = new Agent({
      ...conn,
      descriptor,
      dialTimeoutMs: args['dial-timeout'] ? durationOption('dial-timeout', args['dial-timeout']) : undefined,
    });
    agent.on('new-host-key', (fp) => out.note(`first connection to ${broker}: remembered its host key ${fp}`));
    agent.on('event', (ev) => {
      if (ev.event === 'session') {
        out.event(ev, [
          `Session code: ${ev.code}`,
          '',
          'Give the code to your helpers. They run:',
          `  ${ev.helperCommand}`,
          'or, with stock OpenSSH:',
          `  ${stockHelperCommand(ev.code, ev.broker)}`,
          '',
          formatDescriptor(descriptor),
          '',
          'Waiting for helpers. Press Ctrl-C to end the session.',
        ].join('\n'));
        out.flush(); // the code someone waits for
      } else if (ev.event !== 'session-ended') {
        out.event(ev, eventText(ev));
      }
    });
    agent.on('stream-opened', (s) => out.event({ event: 'stream-opened', ...s }, `helper #${s.helper} → ${s.target}: ${s.rep === 0 ? 'connected' : s.reason}`));
    agent.on('stream-closed', (s) => out.event({ event: 'stream-closed', ...s }, `helper #${s.helper} × ${s.target} (sent ${s.sent} B, received ${s.received} B, ${s.durationMs} ms)`));
    agent.on('ended', (err) => {
      out.event({ event: 'session-ended', reason: err.code === 'BRK_SESSION_ENDED' ? 'ended' : 'connection-lost', message: err.message }, err.message);
      process.exit(ExitCode.SESSION_ENDED);
    });
    const stop = () => { agent.close(); process.exit(ExitCode.OK); };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await agent.start();
    applyRunningTuning(); // exposed: from here on, tuning for the traffic's code
  } catch (err) {
    fail('broker-agent expose', err, args.json);
  }
}

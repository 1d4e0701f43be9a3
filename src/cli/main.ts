/**
 * Entry points for `broker` and `broker-agent`: the yargs command registry. yargs 18
 * is ESM-only, so it is loaded with a native dynamic import (kept inside cli/).
 */
import { runServe, serveOptions, type ServeArgs } from './serve';
import { exposeOptions, runExpose, type ExposeArgs } from './expose';
import { joinOptions, runJoin, type JoinArgs } from './join';
import { execOptions, runExec, type ExecArgs } from './exec';
import { diagOptions, runDiag, type DiagArgs } from './diag';

const EPILOGUE = 'Precedence: flags, then BROKER_* environment variables, then defaults. Docs: README.md';

async function loadYargs() {
  const { default: yargs } = await import('yargs');
  const { hideBin } = await import('yargs/helpers');
  return yargs(hideBin(process.argv));
}

/** `broker serve` */
export async function brokerMain(): Promise<void> {
  const y = await loadYargs();
  await y
    .scriptName('broker')
    .command('serve', 'run the broker (SSH server for devices and helpers)', (c) => c.options(serveOptions), (argv) => runServe(argv as unknown as ServeArgs))
    .demandCommand(1, 'say which command: broker serve')
    .strict()
    .epilogue(EPILOGUE)
    .help()
    .parseAsync();
}

/** `broker-agent expose | join CODE` */
export async function agentMain(): Promise<void> {
  const y = await loadYargs();
  await y
    .scriptName('broker-agent')
    .command('expose', 'expose this device\'s network to helpers (prints a session code)', (c) => c.options(exposeOptions), (argv) => runExpose(argv as unknown as ExposeArgs))
    .command('join <code>', 'join a session: local SOCKS5 proxy into the device\'s network', (c) => c.positional('code', { type: 'string', describe: 'the session code the device shows' }).options(joinOptions), (argv) => runJoin(argv as unknown as JoinArgs))
    .command('exec <code> [command..]', 'run COMMAND with proxy variables pointing into the device\'s network', (c) => c.positional('code', { type: 'string' }).positional('command', { type: 'string', array: true }).options(execOptions).parserConfiguration({ 'populate--': true, 'unknown-options-as-args': true }), (argv) => runExec(argv as unknown as ExecArgs))
    .command('diag <code>', 'run tcp/http/https checks through the device and report', (c) => c.positional('code', { type: 'string' }).options(diagOptions), (argv) => runDiag(argv as unknown as DiagArgs))
    .demandCommand(1, 'say which command: expose, join CODE, exec CODE -- COMMAND, or diag CODE --check URL')
    .strict()
    .epilogue(EPILOGUE)
    .help()
    .parseAsync();
}

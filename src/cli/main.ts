/**
 * Entry points for `broker` and `broker-agent`: the yargs command registry. yargs 18
 * is ESM-only, so it is loaded with a native dynamic import (kept inside cli/).
 *
 * Each command's module (and what it pulls in: the broker, the agent or the helper) is
 * loaded only when yargs picks that command, in its builder: `broker-agent join` does
 * not load the broker's metrics or the agent's dialer, which is time a helper waits for
 * on every start (docs/performance.md, "Start-up").
 */
import type * as Serve from './serve';
import type * as Expose from './expose';
import type * as Join from './join';
import type * as Exec from './exec';
import type * as Diag from './diag';

const serve = (): typeof Serve => require('./serve');
const expose = (): typeof Expose => require('./expose');
const join = (): typeof Join => require('./join');
const exec = (): typeof Exec => require('./exec');
const diag = (): typeof Diag => require('./diag');

/**
 * Load every command's module without running it: the build calls this before it
 * saves the CLI bundle's V8 code cache (`load-bundle.ts`), so that the cache holds
 * the compiled top-level code of everything a command loads.
 */
export function loadCommands(): void {
  for (const load of [serve, expose, join, exec, diag]) load();
}

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
    .command('serve', 'run the broker (SSH server for devices and helpers)', (c) => c.options(serve().serveOptions), (argv) => serve().runServe(argv as unknown as Serve.ServeArgs))
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
    .command('expose', 'expose this device\'s network to helpers (prints a session code)', (c) => c.options(expose().exposeOptions), (argv) => expose().runExpose(argv as unknown as Expose.ExposeArgs))
    .command('join <code>', 'join a session: local SOCKS5 proxy into the device\'s network', (c) => c.positional('code', { type: 'string', describe: 'the session code the device shows' }).options(join().joinOptions), (argv) => join().runJoin(argv as unknown as Join.JoinArgs))
    .command('exec <code> [command..]', 'run COMMAND with proxy variables pointing into the device\'s network', (c) => c.positional('code', { type: 'string' }).positional('command', { type: 'string', array: true }).options(exec().execOptions).parserConfiguration({ 'populate--': true, 'unknown-options-as-args': true }), (argv) => exec().runExec(argv as unknown as Exec.ExecArgs))
    .command('diag <code>', 'run tcp/http/https checks through the device and report', (c) => c.positional('code', { type: 'string' }).options(diag().diagOptions), (argv) => diag().runDiag(argv as unknown as Diag.DiagArgs))
    .demandCommand(1, 'say which command: expose, join CODE, exec CODE -- COMMAND, or diag CODE --check URL')
    .strict()
    .epilogue(EPILOGUE)
    .help()
    .parseAsync();
}

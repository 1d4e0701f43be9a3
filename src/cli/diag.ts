/** `broker-agent diag CODE --check URL...`: run checks through the device, print a table or JSON lines; exit 0 only if all pass. */
import fs from 'node:fs';
import { Helper } from '../helper/helper';
import { parseCheck, parseChecksFile, runChecks, type CheckResult, type CheckSpec } from '../helper/diag';
import { BrokerError } from '../errors';
import { fail } from './exit';
import { type ClientArgs, clientConnection, clientOptions, durationOption } from './options';

export interface DiagArgs extends ClientArgs {
  code: string;
  check?: string[];
  'checks-file'?: string;
  concurrency: number;
  timeout: string;
  insecure: boolean;
}

export const diagOptions = {
  ...clientOptions,
  check: { type: 'string', array: true, describe: 'a check: tcp://HOST:PORT, http://HOST/PATH or https://HOST/PATH (repeatable)' },
  'checks-file': { type: 'string', describe: 'read checks from a file, one URL per line (# comments)' },
  concurrency: { type: 'number', default: 8, describe: 'checks running at once' },
  timeout: { type: 'string', default: '10s', describe: 'time limit per check' },
  insecure: { type: 'boolean', default: false, describe: 'https: report certificate problems but do not fail on them' },
} as const;

export async function runDiag(args: DiagArgs): Promise<void> {
  try {
    const checks: CheckSpec[] = (args.check ?? []).map(parseCheck);
    if (args['checks-file']) {
      let text: string;
      try { text = fs.readFileSync(args['checks-file'], 'utf8'); } catch (err) {
        throw new BrokerError('BRK_BAD_OPTION', `cannot read --checks-file ${args['checks-file']}: ${(err as NodeJS.ErrnoException).code}`);
      }
      checks.push(...parseChecksFile(text));
    }
    if (checks.length === 0) throw new BrokerError('BRK_BAD_OPTION', 'no checks: pass --check tcp://HOST:PORT (or http://, https://) or --checks-file FILE');
    const helper = new Helper({
      ...clientConnection(args, 'diag'),
      code: String(args.code),
      socks: { host: '127.0.0.1', port: 0 }, http: null,
    });
    await helper.start();
    const progress = !args.json && process.stderr.isTTY;
    const results = await runChecks(helper.opener!, checks, {
      concurrency: args.concurrency,
      timeoutMs: durationOption('timeout', args.timeout),
      insecure: args.insecure,
      onResult: (r, done, total) => {
        if (args.json) process.stdout.write(`${JSON.stringify(r)}\n`);
        else if (progress) process.stderr.write(`\r\x1b[Kchecking… ${done}/${total}`);
      },
    });
    if (progress) process.stderr.write('\r\x1b[K');
    if (!args.json) process.stdout.write(formatTable(results));
    helper.close();
    process.exit(results.every((r) => r.ok) ? 0 : 1);
  } catch (err) {
    fail('broker-agent diag', err, args.json);
  }
}

/** A readable table of results, plus a summary line. */
export function formatTable(results: CheckResult[]): string {
  const rows = results.map((r) => [
    r.check,
    r.ok ? 'ok' : 'FAIL',
    r.status !== undefined ? String(r.status) : '',
    r.connectMs !== undefined ? `${r.connectMs} ms` : '',
    r.ttfbMs !== undefined ? `${r.ttfbMs} ms` : '',
    r.bytes !== undefined ? `${r.bytes} B` : '',
    detail(r),
  ]);
  const head = ['CHECK', 'RESULT', 'STATUS', 'CONNECT', 'TTFB', 'SIZE', 'DETAIL'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const passed = results.filter((r) => r.ok).length;
  return `${[line(head), ...rows.map(line)].join('\n')}\n${passed}/${results.length} checks passed\n`;
}

function detail(r: CheckResult): string {
  if (r.error && !r.status) return `${r.error.code}: ${r.error.message}`;
  if (r.tls) return `cert ${r.tls.subject} by ${r.tls.issuer}, ${r.tls.daysLeft} days left${r.tls.authorized ? '' : ` (untrusted: ${r.tls.authorizationError})`}`;
  return '';
}

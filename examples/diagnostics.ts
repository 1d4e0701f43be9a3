/**
 * A diagnostics script using the programmatic API: join a session, check a list of
 * services on the device's network, print a summary, exit non-zero on any failure.
 *
 *   npx ts-node examples/diagnostics.ts CODE broker.example.com:2222 tcp://10.20.0.5:22 https://printer.lan/
 *   (or compile it; it imports the package root: `remote-assist-broker`, here ../src)
 */
import { join } from '../src/index';

async function main(): Promise<number> {
  const [code, broker, ...checks] = process.argv.slice(2);
  if (!code || !broker || checks.length === 0) {
    console.error('usage: diagnostics.ts CODE BROKER_HOST:PORT CHECK_URL...');
    return 2;
  }
  const session = await join({ code, broker, http: null, fingerprint: process.env.BROKER_FINGERPRINT, knownBrokersFile: process.env.KNOWN_BROKERS });
  try {
    console.log(`joined ${session.descriptor.label ?? 'session'}; proxy ${session.socksUrl}`);
    const results = await session.check(checks, { concurrency: 4, timeoutMs: 5000 });
    for (const r of results) {
      const what = r.ok
        ? `ok   ${r.status ?? ''} connect ${r.connectMs} ms${r.ttfbMs !== undefined ? `, first byte ${r.ttfbMs} ms` : ''}`
        : `FAIL ${r.error?.code}: ${r.error?.message}`;
      console.log(`${r.check.padEnd(40)} ${what}`);
    }
    return results.every((r) => r.ok) ? 0 : 1;
  } finally {
    await session.close();
  }
}

main().then((code) => process.exit(code), (err) => {
  console.error(`diagnostics: ${err.message} [${err.code ?? 'ERROR'}]`);
  process.exit(err.code === 'BRK_BAD_CODE' ? 3 : 1);
});

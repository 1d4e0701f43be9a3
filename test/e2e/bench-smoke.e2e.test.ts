/**
 * The benchmark suite must not rot: run two short scenarios (ours and direct only,
 * tiny sizes) and check that they produce numbers. No timing is asserted.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO, run, tempDir } from './harness';

test('npm run bench -- --quick (httpfront, connections) produces a results file with numbers', async () => {
  const out = path.join(tempDir('rab-bench-'), 'results.json');
  await run(process.execPath, [path.join(REPO, 'bench', 'run.js'), '--quick', '--skip-openssh', '--only', 'httpfront,connections', '--repeats', '1', '--out', out], 180_000);
  const results = JSON.parse(fs.readFileSync(out, 'utf8')) as { scenarios: Array<{ name: string; errors: string[]; rows: Array<{ metric: string; stats: Record<string, { median: number | null }> }> }> };
  const byName = Object.fromEntries(results.scenarios.map((s) => [s.name, s]));
  for (const name of ['httpfront', 'connections']) {
    expect(byName[name]).toBeDefined();
    expect(byName[name]!.errors).toEqual([]);
  }
  const median = (scenario: string, metric: string) => byName[scenario]!.rows.find((r) => r.metric === metric)?.stats.ours?.median;
  expect(median('httpfront', 'keep-alive requests/s via HTTP proxy')).toBeGreaterThan(0);
  expect(median('httpfront', 'keep-alive requests/s via SOCKS')).toBeGreaterThan(0);
  expect(median('connections', 'connections/s (sequential)')).toBeGreaterThan(0);
}, 240_000);

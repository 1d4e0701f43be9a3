#!/usr/bin/env node
'use strict';
/**
 * What one piece of per-stream work costs when it runs once per event-loop turn, as it
 * does in our processes while connections open one after another: each stream's work
 * comes between sleeps, with cold caches. A tight loop understates it several times (a
 * winston audit line: about 20 µs in a loop, 54-63 µs once per turn here), and the
 * chain's A/Bs (bench/ab.js) cannot resolve pieces of 10-30 µs on a noisy machine. So
 * every piece runs in one process, once per timer turn, in blocks of --turns turns, and
 * the blocks of every piece and build take turns; medians over --blocks blocks.
 *
 *   node bench/turn-cost.js [--blocks N (30)] [--turns N (100)] [build=DIR ...]
 *
 * Pieces, run from each build's dist/ (this checkout's, and each snapshot given with
 * build=DIR, made by `node bench/ab.js --snapshot DIR`):
 *   empty         a timer turn that does nothing: the baseline the others are given above
 *   audit-line    the broker's audit line per stream: the JSON logger at info, a session's
 *                 child logger, one info() with a stream's fields, to stderr (a file)
 *   stream-lines  a device's two printed lines per stream (Printer, --json), the second a
 *                 turn later, to stdout (a file)
 *   next-tick     one process.nextTick per turn (a reference)
 * Prints, per piece and build, the event loop's active time and the process's CPU time
 * per turn above `empty` (µs), and the ratio to the first build. The measuring process's
 * stdout and stderr go to a temp file, removed at the end.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { fork } = require('node:child_process');
const { median, positiveIntOption } = require('./lib/util');
const { isRunnableCode, ROOT } = require('./lib/snapshot');

const PIECES = ['empty', 'audit-line', 'stream-lines', 'next-tick'];
const DEADLINE_MS = 300_000;

/** The pieces of one build: name -> function run once per turn (null: nothing). */
function piecesOf(dir) {
  const { createLogger } = require(path.join(dir, 'dist', 'log.js'));
  const { Printer } = require(path.join(dir, 'dist', 'cli', 'printer.js'));
  // stderr is a file here: a synchronous write, as the broker's log to a file or a pipe
  const log = createLogger({ format: 'json', level: 'info', scope: 'broker', stream: process.stderr })
    .child('session ab12…', { session: 'ab12…' });
  const printer = new Printer(true);
  let n = 0;
  return {
    empty: null,
    'audit-line': () => log.info('stream closed', { event: 'stream', helper: 1, via: 'direct-tcpip', dest: '10.20.0.5:443', outcome: 'succeeded', sent: 517, received: 4210, durationMs: 12 }),
    'stream-lines': () => {
      const helper = 1 + (n++ % 3);
      printer.event({ event: 'stream-opened', helper, target: '10.20.0.5:443', rep: 0, reason: 'succeeded' }, '');
      setTimeout(() => printer.event({ event: 'stream-closed', helper, target: '10.20.0.5:443', sent: 517, received: 4210, durationMs: 12 }, ''), 0);
    },
    'next-tick': () => process.nextTick(() => {}),
  };
}

/** The measuring child: every (piece, build) in turn, a block of `turns` timer turns each. */
function measure({ builds, blocks, turns }) {
  const runs = [];
  for (const b of builds) {
    const pieces = piecesOf(b.dir);
    for (const name of PIECES) runs.push({ build: b.label, piece: name, fn: pieces[name], active: [], cpu: [] });
  }
  const started = performance.now();
  let block = 0;
  const next = () => {
    if (block >= blocks * runs.length || performance.now() - started > DEADLINE_MS) {
      process.send(runs.map((r) => ({ build: r.build, piece: r.piece, active: median(r.active), cpu: median(r.cpu), blocks: r.active.length })), () => process.exit(0));
      return;
    }
    const r = runs[block++ % runs.length];
    const e0 = performance.eventLoopUtilization();
    const c0 = process.cpuUsage();
    let i = 0;
    const turn = () => {
      if (r.fn) r.fn();
      if (++i < turns) return void setTimeout(turn, 0);
      // the last turn's deferred work (a printed line's second half) runs before the block ends
      setTimeout(() => {
        const e = performance.eventLoopUtilization(e0);
        const c = process.cpuUsage(c0);
        r.active.push((e.active * 1000) / turns);
        r.cpu.push((c.user + c.system) / turns);
        setTimeout(next, 0);
      }, 0);
    };
    turn();
  };
  next();
}

function main() {
  const blocks = positiveIntOption(process.argv, 'blocks', 30);
  const turns = positiveIntOption(process.argv, 'turns', 100);
  const builds = [{ label: 'this build', dir: ROOT }];
  for (const a of process.argv.slice(2)) {
    if (!a.startsWith('build=')) continue;
    const dir = path.resolve(a.slice('build='.length));
    if (!isRunnableCode(dir)) throw new Error(`build=${dir}: not a snapshot with bin/ and a built dist/ (make one with node bench/ab.js --snapshot DIR)`);
    builds.push({ label: a, dir });
  }
  if (!fs.existsSync(path.join(ROOT, 'dist', 'log.js'))) throw new Error('dist/ is missing: run npm run build first');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'turn-cost-'));
  const out = fs.openSync(path.join(tmp, 'output.log'), 'a');
  const child = fork(__filename, ['--child'], { stdio: ['ignore', out, out, 'ipc'] });
  const cleanup = () => fs.rmSync(tmp, { recursive: true, force: true });
  child.once('message', (results) => {
    cleanup();
    const at = (build, piece) => results.find((r) => r.build === build && r.piece === piece);
    process.stdout.write(`one piece per event-loop turn: medians of ${blocks} blocks of ${turns} turns, pieces and builds taking turns; µs per turn above "empty"\n`);
    process.stdout.write(`${'piece'.padEnd(14)}${'build'.padEnd(28)}${'active'.padStart(9)}${'CPU'.padStart(9)}${'CPU ratio'.padStart(11)}\n`);
    for (const piece of PIECES) {
      for (const b of builds) {
        const r = at(b.label, piece);
        const base = at(b.label, 'empty');
        const first = at(builds[0].label, piece);
        const firstBase = at(builds[0].label, 'empty');
        const active = piece === 'empty' ? r.active : r.active - base.active;
        const cpu = piece === 'empty' ? r.cpu : r.cpu - base.cpu;
        const ratio = piece === 'empty' || b === builds[0] ? '' : `${(cpu / (first.cpu - firstBase.cpu)).toFixed(2)}x`;
        process.stdout.write(`${piece.padEnd(14)}${b.label.slice(0, 27).padEnd(28)}${active.toFixed(1).padStart(9)}${cpu.toFixed(1).padStart(9)}${ratio.padStart(11)}\n`);
      }
    }
    process.stdout.write('("empty" rows: the whole turn, for scale)\n');
  });
  child.once('exit', (code) => {
    if (code !== 0) {
      const log = fs.existsSync(path.join(tmp, 'output.log')) ? fs.readFileSync(path.join(tmp, 'output.log'), 'utf8').slice(-2000) : '';
      cleanup();
      process.stderr.write(`turn-cost: the measuring process exited with ${code}\n${log}`);
      process.exitCode = 2;
    }
  });
  child.send({ builds, blocks, turns });
}

if (process.argv[2] === '--child') process.once('message', measure);
else {
  try {
    main();
  } catch (err) {
    process.stderr.write(`turn-cost: ${err.message}\n`);
    process.exit(2);
  }
}

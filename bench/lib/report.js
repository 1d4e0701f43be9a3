'use strict';
/**
 * Results of one scenario and the table printed at the end.
 * A row is one metric; each variant has a list of values (one per repeated run).
 * Columns: median [min–max] per variant, then
 *   ours/OpenSSH: ours' median / the better of the two OpenSSH medians
 *   ours/direct:  ours' median / direct's median
 *   ours/plain:   ours' median / plain-node's (our chain's shape as plain Node TCP
 *                 relays, no SSH: bench/lib/plain-node.js), where a scenario runs it
 *   fast-open/OpenSSH: as ours/OpenSSH for "ours-fast-open" (`join --fast-open`), where a
 *                 scenario runs it (wan)
 * Ratios are raw quotients: for "higher is better" rows (MiB/s, conn/s) above
 * 1.00x means ours is better; for "lower is better" rows (ms, KiB) below 1.00x
 * means ours is better. The arrow after the unit says which way is better.
 */
const { median } = require('./util');

const VARIANTS = ['direct', 'plain-node', 'openssh-N', 'openssh-tt', 'ours', 'ours-fast-open'];

class Results {
  constructor(name, title) {
    this.name = name;
    this.title = title;
    this.rows = new Map();
    this.notes = [];
    this.partials = [];
    this.errors = [];
    this.rawRuns = [];
    this.startedAt = new Date().toISOString();
  }
  add(metric, unit, better, variant, value) {
    let row = this.rows.get(metric);
    if (!row) { row = { metric, unit, better, values: {} }; this.rows.set(metric, row); }
    (row.values[variant] ??= []).push(Number.isFinite(value) ? value : null);
  }
  note(text) { this.notes.push(text); }
  partial(text) { if (!this.partials.includes(text)) this.partials.push(text); }
  error(text) { this.errors.push(text); }
  raw(obj) { this.rawRuns.push(obj); }

  summarize() {
    const rows = [];
    for (const row of this.rows.values()) {
      const stats = {};
      for (const [v, list] of Object.entries(row.values)) {
        const ok = list.filter((x) => x !== null);
        stats[v] = ok.length ? { median: median(ok), min: Math.min(...ok), max: Math.max(...ok), runs: ok.length, values: list } : { median: null, min: null, max: null, runs: 0, values: list };
      }
      const med = (v) => (stats[v] && stats[v].median !== null ? stats[v].median : null);
      const osshCands = ['openssh-N', 'openssh-tt'].map((v) => ({ v, m: med(v) })).filter((x) => x.m !== null);
      let best = null;
      if (osshCands.length) {
        best = osshCands.reduce((a, b) => ((row.better === 'higher' ? b.m > a.m : b.m < a.m) ? b : a));
      }
      const quotient = (num, den) => (num !== null && den !== null && den !== 0 ? num / den : null);
      const bestM = best ? best.m : null;
      const fast = quotient(med('ours-fast-open'), bestM);
      rows.push({
        metric: row.metric, unit: row.unit, better: row.better, stats,
        opensshBest: best ? best.v : null,
        oursVsOpenssh: quotient(med('ours'), bestM),
        oursVsDirect: quotient(med('ours'), med('direct')),
        oursVsPlain: quotient(med('ours'), med('plain-node')),
        ...(fast !== null ? { fastOpenVsOpenssh: fast } : {}),
      });
    }
    return { name: this.name, title: this.title, startedAt: this.startedAt, notes: this.notes, partial: this.partials, errors: this.errors, rows, runs: this.rawRuns };
  }
}

function fmtNum(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  const a = Math.abs(x);
  if (a >= 10000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

function cell(s) {
  if (!s || s.median === null) return '-';
  if (s.runs <= 1 || s.min === s.max) return fmtNum(s.median);
  return `${fmtNum(s.median)} [${fmtNum(s.min)}-${fmtNum(s.max)}]`;
}

function fmtRatio(r) {
  return r === null || !Number.isFinite(r) ? '-' : `${r.toFixed(2)}x`;
}

/** Render one scenario summary as a fixed-width table. */
function renderTable(sum) {
  const present = VARIANTS.filter((v) => sum.rows.some((r) => r.stats[v] && r.stats[v].median !== null));
  const fastOpen = sum.rows.some((r) => r.fastOpenVsOpenssh !== undefined);
  const plain = sum.rows.some((r) => r.oursVsPlain !== null && r.oursVsPlain !== undefined);
  const header = ['metric', 'unit', ...present, 'ours/OpenSSH', 'ours/direct', ...(plain ? ['ours/plain'] : []), ...(fastOpen ? ['fast-open/OpenSSH'] : [])];
  const lines = sum.rows.map((r) => [
    r.metric,
    `${r.unit} ${r.better === 'higher' ? '^' : 'v'}`,
    ...present.map((v) => cell(r.stats[v])),
    r.oursVsOpenssh === null ? '-' : `${fmtRatio(r.oursVsOpenssh)}${r.opensshBest ? ` (${r.opensshBest.replace('openssh-', '')})` : ''}`,
    fmtRatio(r.oursVsDirect),
    ...(plain ? [fmtRatio(r.oursVsPlain ?? null)] : []),
    ...(fastOpen ? [fmtRatio(r.fastOpenVsOpenssh ?? null)] : []),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => String(l[i]).length)));
  const fmt = (cols) => cols.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  const out = [];
  out.push(`== ${sum.name}: ${sum.title} ==`);
  for (const n of sum.notes) out.push(`   ${n}`);
  out.push(fmt(header));
  out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) out.push(fmt(l));
  for (const p of sum.partial) out.push(`   PARTIAL: ${p}`);
  for (const e of sum.errors.slice(0, 10)) out.push(`   ERROR: ${e}`);
  if (sum.errors.length > 10) out.push(`   ... ${sum.errors.length - 10} more errors in the JSON`);
  return out.join('\n');
}

const LEGEND = [
  'Cells: median [min-max] over repeated runs.  unit ^ = higher is better, v = lower is better.',
  'ours/OpenSSH = ours / the better OpenSSH flavour (N = "ssh -N", tt = "ssh -tt ... sleep", TCP_NODELAY);',
  'ours/direct = ours / no tunnel.  For ^ rows a ratio below 1.00x means ours is slower; for v rows above 1.00x means ours costs more.',
  'plain-node = the shape of our chain (device, broker, helpers: one Node process each) as plain TCP relays, no SSH; ours/plain = ours / plain-node.',
  'fast-open/OpenSSH (wan) = ours with `join --fast-open` / the better OpenSSH flavour.',
].join('\n');

module.exports = { Results, renderTable, LEGEND, VARIANTS };

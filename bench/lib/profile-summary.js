#!/usr/bin/env node
'use strict';
/**
 * Summarise a V8 .cpuprofile (from `npm run bench -- --cpu-prof`): top functions
 * by self time, self time grouped by package/file, and busy time by the innermost
 * function of ours (src/) on each sample's stack: what our code costs including what
 * it calls in Node and in packages (a socket write, winston, prom-client), which
 * self time spreads across hundreds of small frames. Frames in the CLI bundle
 * (dist/cli.bundle.js) are mapped back to their source file and line through the
 * bundle's source map, so ssh2, yargs and each of our modules get their own group.
 * Usage: node bench/lib/profile-summary.js FILE.cpuprofile [TOP=25]
 */
const fs = require('node:fs');
const path = require('node:path');
const { SourceMap } = require('node:module');

/** File path -> SourceMap of the file beside it (FILE.map), or null. */
const maps = new Map();
function sourceMapFor(file) {
  if (!maps.has(file)) {
    let map = null;
    try {
      map = new SourceMap(JSON.parse(fs.readFileSync(`${file}.map`, 'utf8')));
    } catch { /* no map beside it: keep the generated position */ }
    maps.set(file, map);
  }
  return maps.get(file);
}

/** The frame's original { url, line } (0-based line) when its file has a source map. */
function original(cf) {
  const file = (cf.url || '').replace(/^file:\/\//, '');
  const map = file ? sourceMapFor(file) : null;
  const e = map && cf.lineNumber >= 0 ? map.findEntry(cf.lineNumber, Math.max(0, cf.columnNumber)) : null;
  if (!e || !e.originalSource) return { url: cf.url || '', line: cf.lineNumber };
  return { url: path.resolve(path.dirname(file), e.originalSource), line: e.originalLine };
}

function summarise(file, top = 25) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = prof.timeDeltas || [];
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i];
    self.set(id, (self.get(id) || 0) + (dt[i] || 0));
  }
  const all = [...self.values()].reduce((a, b) => a + b, 0) || 1;
  let idle = 0;
  for (const [id, us] of self) if (byId.get(id).callFrame.functionName === '(idle)') idle += us;
  // percentages are of the busy (non-idle) time
  const total = all - idle || 1;
  const fnTime = new Map();
  const fileTime = new Map();
  for (const [id, us] of self) {
    const n = byId.get(id);
    const cf = n.callFrame;
    if (cf.functionName === '(idle)') continue;
    const { url, line } = original(cf);
    const where = url ? `${shorten(url)}:${line + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
    fnTime.set(key, (fnTime.get(key) || 0) + us);
    const group = url ? groupOf(url) : cf.functionName.startsWith('(') ? cf.functionName : '(native)';
    fileTime.set(group, (fileTime.get(group) || 0) + us);
  }
  // Inclusive: each busy sample goes to the innermost frame from src/ on its stack.
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children || []) parent.set(c, n.id);
  const ours = new Map(); // node id -> label of its innermost src/ frame (itself or a caller)
  const oursOf = (id) => {
    if (ours.has(id)) return ours.get(id);
    const cf = byId.get(id).callFrame;
    const { url, line } = original(cf);
    const u = url.replace(/^file:\/\//, '');
    let label;
    if (/(^|\/)src\//.test(u) && !u.includes('node_modules/')) label = `${cf.functionName || '(anonymous)'} ${shorten(u)}:${line + 1}`;
    else label = parent.has(id) ? oursOf(parent.get(id)) : '(no frame of ours)';
    ours.set(id, label);
    return label;
  };
  const underOurs = new Map();
  for (const [id, us] of self) {
    if (byId.get(id).callFrame.functionName === '(idle)') continue;
    const k = oursOf(id);
    underOurs.set(k, (underOurs.get(k) || 0) + us);
  }
  const lines = [`${path.basename(file)}: ${(all / 1000).toFixed(0)} ms sampled, ${(total / 1000).toFixed(0)} ms busy (percentages below are of busy time)`];
  lines.push('  top functions by self time:');
  for (const [k, us] of [...fnTime].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
  lines.push('  self time by module:');
  for (const [k, us] of [...fileTime].sort((a, b) => b[1] - a[1]).slice(0, 12)) lines.push(`    ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
  lines.push('  busy time by our innermost function on the stack (including what it calls):');
  for (const [k, us] of [...underOurs].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
  return lines.join('\n');
}

function shorten(url) {
  return url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, '~/').replace(/^.*\/(dist|src)\//, '$1/');
}

function groupOf(url) {
  const u = url.replace(/^file:\/\//, '');
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(u);
  if (m) return `${m[1]}/${m[2]}`;
  if (u.startsWith('node:')) return u;
  return shorten(u);
}

if (require.main === module) {
  const [file, top] = process.argv.slice(2);
  if (!file) { process.stderr.write('usage: node bench/lib/profile-summary.js FILE.cpuprofile [TOP]\n'); process.exit(2); }
  process.stdout.write(`${summarise(file, Number(top) || 25)}\n`);
}

module.exports = { summarise };

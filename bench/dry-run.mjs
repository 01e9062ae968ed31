#!/usr/bin/env node
// CPU time of `builder build --dry-run` on every corpus Dockerfile (process user + system time,
// best of several runs, as a loaded machine swings an ~80 ms process by ±25 ms). Start-up is
// most of it: this is the figure to watch when adding imports to the CLI's path.
//
//   node bench/dry-run.mjs [--runs 5] [--json]
//
// Needs a compiled builder (npm run build). Nothing is pulled or written.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BUILDER, log, median } from './lib.mjs';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, json: { type: 'boolean', default: false } } });
const RUNS = Number(values.runs);
const CORPUS = fileURLToPath(new URL('../test/corpus/dockerfiles/', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'builder-bench-dryrun-'));

/** user+sys CPU milliseconds of one dry run, read from bash's `times` for its child. */
function cpuMs(dir) {
  const r = spawnSync('bash', ['-c', '"$@" >/dev/null 2>&1; rc=$?; times; exit $rc', 'bash', BUILDER, 'build', '--dry-run', '--root', root, dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dry run of ${dir} failed`);
  const children = r.stdout.trim().split('\n').at(-1) ?? '';
  const seconds = [...children.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return Math.round(((seconds[0] ?? 0) + (seconds[1] ?? 0)) * 1000);
}

try {
  const best = {};
  for (let run = 0; run < RUNS; run++) {
    for (const name of readdirSync(CORPUS).sort()) best[name] = Math.min(best[name] ?? Infinity, cpuMs(join(CORPUS, name)));
  }
  const figures = Object.values(best).sort((a, b) => a - b);
  const summary = { files: figures.length, runs: RUNS, minMs: figures[0], medianMs: median(figures), maxMs: figures.at(-1) };
  if (values.json) console.log(JSON.stringify({ summary, best }));
  else log(`dry-run CPU per Dockerfile, best of ${RUNS} (ms): min ${summary.minMs} median ${summary.medianMs} max ${summary.maxMs} over ${summary.files} files`);
} finally {
  rmSync(root, { recursive: true, force: true });
}

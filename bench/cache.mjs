#!/usr/bin/env node
// How good is the cache? Times builder on a generated project — cold, warm (nothing changed),
// incremental (one source file changed), and a dependency install placed before vs after the
// broad `COPY . .` — and, where a Docker engine answers, BuildKit on the same inputs, reported
// side by side as ratios (absolute times on shared machines drift; ratios within one run do not).
//
//   node bench/cache.mjs [--files 2000] [--runs 3]
//
// Needs: a compiled builder (npm run build), runc, and a base image reachable as BENCH_BASE
// (default: busybox:local, which scripts/quickstart.sh builds into the local store).

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const { values } = parseArgs({ options: { files: { type: 'string', default: '2000' }, runs: { type: 'string', default: '3' } } });
const FILES = Number(values.files);
const RUNS = Number(values.runs);
const BASE = process.env.BENCH_BASE ?? 'busybox:local';
const BUILDER = fileURLToPath(new URL('../bin/builder', import.meta.url));
const dockerWorks = spawnSync('docker', ['info'], { stdio: 'ignore' }).status === 0;

const work = mkdtempSync(join(tmpdir(), 'builder-bench-'));
const ctx = join(work, 'ctx');

function makeProject() {
  mkdirSync(join(ctx, 'src'), { recursive: true });
  writeFileSync(join(ctx, 'package.json'), '{"name":"bench","dependencies":{"x":"1"}}\n');
  for (let i = 0; i < FILES; i++) {
    const dir = join(ctx, 'src', `m${i % 50}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `f${i}.js`), `export const v${i} = ${i};\n`.repeat(20));
  }
  const install = 'RUN mkdir -p deps && cp package.json deps/ && sleep 1';
  writeFileSync(join(ctx, 'Dockerfile.good'), `FROM ${BASE}\nWORKDIR /app\nCOPY package.json .\n${install}\nCOPY . .\nRUN ls -R src | wc -l > files.txt\n`);
  writeFileSync(join(ctx, 'Dockerfile.bad'), `FROM ${BASE}\nWORKDIR /app\nCOPY . .\n${install}\nRUN ls -R src | wc -l > files.txt\n`);
}

function time(cmd, args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stderr}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const tools = {
  builder: {
    fresh: () => rmSync(join(work, 'root'), { recursive: true, force: true }),
    build: (file) => time(process.execPath, [BUILDER, 'build', '--root', join(work, 'root'), '--progress', 'quiet', '-f', join(ctx, file), ctx]),
  },
  buildkit: {
    fresh: () => spawnSync('docker', ['builder', 'prune', '-af'], { stdio: 'ignore' }),
    build: (file) => time('docker', ['build', '--network=none', '-q', '-f', join(ctx, file), ctx]),
  },
};

function touchOneSource(n) {
  writeFileSync(join(ctx, 'src', 'm0', 'f0.js'), `export const v0 = ${n};\n`);
}

function scenario(tool, file) {
  const t = tools[tool];
  const cold = [];
  const warm = [];
  const incremental = [];
  for (let i = 0; i < RUNS; i++) {
    t.fresh();
    cold.push(t.build(file));
    warm.push(t.build(file));
    touchOneSource(Date.now() + i);
    incremental.push(t.build(file));
  }
  return { cold: median(cold), warm: median(warm), incremental: median(incremental) };
}

makeProject();
const rows = [];
for (const file of ['Dockerfile.good', 'Dockerfile.bad']) {
  const b = scenario('builder', file);
  const k = dockerWorks ? scenario('buildkit', file) : undefined;
  for (const phase of ['cold', 'warm', 'incremental']) {
    rows.push({ file, phase, builder: b[phase], buildkit: k?.[phase] });
  }
}
console.log(`${FILES} source files, median of ${RUNS} runs${dockerWorks ? '' : ' (BuildKit: skipped, no Docker engine answers `docker info`)'}`);
console.log('dockerfile        phase        builder ms   buildkit ms   ratio');
for (const r of rows) {
  const ratio = r.buildkit ? (r.builder / r.buildkit).toFixed(2) : '-';
  console.log(`${r.file.padEnd(17)} ${r.phase.padEnd(12)} ${r.builder.toFixed(0).padStart(10)} ${(r.buildkit?.toFixed(0) ?? '-').padStart(13)} ${ratio.padStart(7)}`);
}
rmSync(work, { recursive: true, force: true });

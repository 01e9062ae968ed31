#!/usr/bin/env node
// How good is the cache? Times builder on a generated project — cold, warm (nothing changed),
// incremental (one source file changed) — with the dependency install placed before the broad
// `COPY . .` (good order) and after it (bad order), side by side with BuildKit where a Docker
// engine answers. Runs interleaved; medians and builder/BuildKit ratios (absolute times on
// shared machines drift, ratios within one run much less).
//
//   node bench/cache.mjs [--files 2000] [--runs 3]
//
// Needs what bench/steps.mjs needs (see there); without a Docker engine only builder runs.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BUILDER, DOCKER, dockerWorks as probeDocker, log, median, pushBaseImage, runBench, startRegistry, timed } from './lib.mjs';

const { values } = parseArgs({ options: { files: { type: 'string', default: '2000' }, runs: { type: 'string', default: '3' } } });
const FILES = Number(values.files);
const RUNS = Number(values.runs);
const dockerWorks = probeDocker();

const work = mkdtempSync(join(tmpdir(), 'builder-bench-cache-'));
const ctx = join(work, 'ctx');
const root = join(work, 'root');
let registry;

function makeProject(base) {
  mkdirSync(join(ctx, 'src'), { recursive: true });
  writeFileSync(join(ctx, 'package.json'), '{"name":"bench","dependencies":{"x":"1"}}\n');
  for (let i = 0; i < FILES; i++) {
    const dir = join(ctx, 'src', `m${i % 50}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `f${i}.js`), `export const v${i} = ${i};\n`.repeat(20));
  }
  // The "install" takes a second, as a real one takes many: the bad order pays it on every edit.
  const install = 'RUN mkdir -p deps && cp package.json deps/ && sleep 1';
  writeFileSync(join(ctx, 'Dockerfile.good'), `FROM ${base}\nWORKDIR /app\nCOPY package.json .\n${install}\nCOPY . .\nRUN ls -R src | wc -l > files.txt\n`);
  writeFileSync(join(ctx, 'Dockerfile.bad'), `FROM ${base}\nWORKDIR /app\nCOPY . .\n${install}\nRUN ls -R src | wc -l > files.txt\n`);
}

const tools = {
  builder: {
    fresh: () => rmSync(join(work, 'cache-root'), { recursive: true, force: true }),
    build: (file) =>
      timed(BUILDER, ['build', '--root', join(work, 'cache-root'), '--network', 'none', '--progress', 'quiet', '-f', join(ctx, file), ctx]),
  },
  buildkit: {
    fresh: () => spawnSync(DOCKER, ['builder', 'prune', '-af'], { stdio: 'ignore' }),
    build: (file) => timed(DOCKER, ['build', '--network=none', '-q', '-f', join(ctx, file), ctx], { env: { DOCKER_BUILDKIT: '1' } }),
  },
};

let edits = 0;
function editOneSource() {
  writeFileSync(join(ctx, 'src', 'm0', 'f0.js'), `export const v0 = ${++edits};\n`);
}

async function main() {
  registry = await startRegistry(work);
  const base = `${registry.host}/bench/busybox:latest`;
  log(`making the base image ${base} with builder`);
  await pushBaseImage(base, root, work);
  makeProject(base);
  // A cold builder run pulls the base from the local registry; BuildKit keeps it in dockerd's
  // image store across `builder prune`, so its cold runs do not: a small edge to BuildKit.
  const names = dockerWorks ? ['builder', 'buildkit'] : ['builder'];
  const rows = [];
  for (const file of ['Dockerfile.good', 'Dockerfile.bad']) {
    const times = Object.fromEntries(names.map((n) => [n, { cold: [], warm: [], incremental: [] }]));
    for (let i = 0; i < RUNS; i++) {
      for (const n of i % 2 === 0 ? names : [...names].reverse()) {
        const t = tools[n];
        t.fresh();
        times[n].cold.push((await t.build(file)).ms);
        times[n].warm.push((await t.build(file)).ms);
        editOneSource();
        times[n].incremental.push((await t.build(file)).ms);
      }
    }
    for (const phase of ['cold', 'warm', 'incremental']) {
      rows.push({ file, phase, builder: median(times.builder[phase]), buildkit: times.buildkit && median(times.buildkit[phase]) });
    }
  }
  console.log(`\n${FILES} source files, medians of ${RUNS} runs; builder ${dockerWorks ? 'vs BuildKit (dockerd 20.10)' : '(no Docker engine: BuildKit not measured)'}\n`);
  console.log('| Dockerfile | phase | builder | BuildKit | ratio |');
  console.log('|---|---|---|---|---|');
  const fmt = (ms) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(2)} s`);
  for (const r of rows) {
    const ratio = r.buildkit ? `${(r.builder / r.buildkit).toFixed(2)}×` : '-';
    console.log(`| ${r.file} | ${r.phase} | ${fmt(r.builder)} | ${fmt(r.buildkit)} | ${ratio} |`);
  }
}

await runBench(main, { work, registry: () => registry, dockerWorks });

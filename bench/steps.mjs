#!/usr/bin/env node
// Per-step overhead, side by side with BuildKit in one run: 30 trivial RUN steps, and one RUN
// that writes 100 MB in 10k files (so the cost of diffing and committing a big layer shows).
// Both tools run every step (--no-cache) on a base image they already have, runs interleaved;
// the report gives medians, builder/BuildKit ratios and builder's peak memory (VmHWM).
//
//   node bench/steps.mjs [--runs 5] [--steps 30] [--big-runs 3] [--json]
//
// Needs: a compiled builder (npm run build), runc, docker-registry and busybox-static. BuildKit
// columns need a Docker engine (`apt-get install -y docker.io`, then
// `dockerd --bridge=none --iptables=false --ip-masq=false &`); without one only builder runs.
// The base image is busybox made by builder itself, pushed to a registry on 127.0.0.1 that
// this script starts, and pulled from there by Docker: nothing leaves loopback.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BUILDER, DOCKER, dockerWorks as probeDocker, log, median, pushBaseImage, runBench, startRegistry, timed } from './lib.mjs';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    steps: { type: 'string', default: '30' },
    'big-runs': { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const RUNS = Number(values.runs);
const STEPS = Number(values.steps);
const BIG_RUNS = Number(values['big-runs']);
const dockerWorks = probeDocker();

const work = mkdtempSync(join(tmpdir(), 'builder-bench-steps-'));
const root = join(work, 'root');
let registry;

async function main() {
  registry = await startRegistry(work);
  const base = `${registry.host}/bench/busybox:latest`;

  log(`making the base image ${base} with builder`);
  await pushBaseImage(base, root, work);

  const ctx = join(work, 'ctx');
  mkdirSync(ctx);
  const steps = Array.from({ length: STEPS }, (_, i) => `RUN echo step-${i} > /step-${i}`).join('\n');
  writeFileSync(join(ctx, 'Dockerfile.steps'), `FROM ${base}\n${steps}\n`);
  const big =
    'mkdir -p /data/0 && head -c 786432 /dev/urandom | base64 -w 0 > /tmp/r' +
    ' && for j in $(seq 0 99); do dd if=/tmp/r of=/data/0/$j bs=10240 skip=$j count=1 2>/dev/null; done' +
    ' && for d in $(seq 1 99); do cp -r /data/0 /data/$d; done && rm /tmp/r';
  writeFileSync(join(ctx, 'Dockerfile.big'), `FROM ${base}\nRUN ${big}\n`);
  // The same RUN without its output: what the command itself costs, to tell commit costs apart.
  writeFileSync(join(ctx, 'Dockerfile.bigrm'), `FROM ${base}\nRUN ${big} && rm -rf /data\n`);

  const builderRun = (file, extra = []) => () =>
    timed(BUILDER, ['build', '--root', root, '--network', 'none', '--no-cache', '--progress', 'quiet', ...extra, '-f', join(ctx, file), ctx], { sampleMemory: true });
  const buildkitRun = (file) => async () => {
    const r = await timed(DOCKER, ['build', '--network=none', '--no-cache', '-q', '-f', join(ctx, file), ctx], { env: { DOCKER_BUILDKIT: '1' } });
    spawnSync(DOCKER, ['rmi', '-f', r.out.trim()], { stdio: 'ignore' });
    return r;
  };

  const scenarios = [
    { name: `${STEPS} trivial RUN steps`, runs: RUNS, goal: 0.8, tools: { builder: builderRun('Dockerfile.steps'), buildkit: buildkitRun('Dockerfile.steps') } },
    {
      name: `${STEPS} trivial RUN steps (native snapshotter)`,
      runs: RUNS,
      tools: { builder: builderRun('Dockerfile.steps', ['--root', join(work, 'root-native'), '--snapshotter', 'native']) },
      setup: () => timed(BUILDER, ['build', '--root', join(work, 'root-native'), '--snapshotter', 'native', '--network', 'none', '--progress', 'quiet', '-f', join(ctx, 'Dockerfile.steps'), ctx]),
    },
    { name: 'RUN writing 100 MB in 10k files', runs: BIG_RUNS, goal: 1.0, tools: { builder: builderRun('Dockerfile.big'), buildkit: buildkitRun('Dockerfile.big') } },
    { name: '  same RUN, output deleted (the command alone)', runs: BIG_RUNS, tools: { builder: builderRun('Dockerfile.bigrm'), buildkit: buildkitRun('Dockerfile.bigrm') } },
  ];

  const results = [];
  for (const s of scenarios) {
    log(`${s.name}: ${s.runs} runs`);
    if (s.setup) await s.setup();
    const names = Object.keys(s.tools).filter((t) => t !== 'buildkit' || dockerWorks);
    const times = Object.fromEntries(names.map((n) => [n, []]));
    let peakKB = 0;
    for (let i = 0; i < s.runs; i++) {
      // Interleaved, alternating which goes first.
      for (const n of i % 2 === 0 ? names : [...names].reverse()) {
        const r = await s.tools[n]();
        times[n].push(r.ms);
        if (n === 'builder') peakKB = Math.max(peakKB, r.peakKB);
      }
    }
    const row = { scenario: s.name, builderMs: median(times.builder), peakMB: peakKB / 1024 };
    if (times.buildkit) {
      row.buildkitMs = median(times.buildkit);
      row.ratio = row.builderMs / row.buildkitMs;
    }
    if (s.goal !== undefined) row.goal = s.goal;
    results.push(row);
  }

  if (values.json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return;
  }
  const fmt = (ms) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(2)} s`);
  console.log(`\nmedians; builder ${dockerWorks ? 'vs BuildKit (dockerd 20.10)' : '(no Docker engine: BuildKit not measured)'}\n`);
  console.log('| scenario | builder | BuildKit | ratio | goal | builder peak RSS |');
  console.log('|---|---|---|---|---|---|');
  for (const r of results) {
    const ratio = r.ratio === undefined ? '-' : `${r.ratio.toFixed(2)}×`;
    const goal = r.goal === undefined ? '' : `≤ ${r.goal}× ${r.ratio === undefined ? '' : r.ratio <= r.goal ? 'met' : 'MISSED'}`;
    console.log(`| ${r.scenario} | ${fmt(r.builderMs)} | ${fmt(r.buildkitMs)} | ${ratio} | ${goal} | ${r.peakMB.toFixed(0)} MB |`);
  }
}

await runBench(main, { work, registry: () => registry, dockerWorks });

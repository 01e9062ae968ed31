#!/usr/bin/env node
// How long a build takes to stop when interrupted in the middle of a RUN step: from the signal to
// the command's exit (builder has stopped the container, unmounted and removed the step's
// snapshot by then), side by side with `docker build` in one run. The tests only check that a
// build stops and cleans up; how fast is this figure, since a time limit in a test fails on a
// busy machine.
//
//   node bench/stop.mjs [--runs 5] [--json]
//
// Needs: a compiled builder (npm run build), runc, docker-registry and busybox-static. The
// BuildKit column needs a Docker engine (see bench/steps.mjs); without one only builder runs.
// The base image is made by builder and pushed to a registry on 127.0.0.1 that this script
// starts: nothing leaves loopback.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BUILDER, DOCKER, dockerWorks as probeDocker, log, median, pushBaseImage, runBench, startRegistry } from './lib.mjs';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, json: { type: 'boolean', default: false } } });
const RUNS = Number(values.runs);
const dockerWorks = probeDocker();
const MARKER = 'ready-42';

const work = mkdtempSync(join(tmpdir(), 'builder-bench-stop-'));
const root = join(work, 'root');
let registry;

/**
 * Starts `cmd`, waits until the RUN step has printed its marker (the container is running),
 * sends `signal`, and resolves with the milliseconds until the process has exited.
 */
function stopTime(cmd, args, signal, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    let err = '';
    let t0;
    child.stderr.on('data', (d) => {
      err += d;
      if (t0 === undefined && err.includes(MARKER)) {
        t0 = process.hrtime.bigint();
        child.kill(signal);
      }
    });
    child.on('close', (code) => {
      if (t0 === undefined) reject(new Error(`${cmd} ${args.join(' ')} ended (${code}) before its RUN step started:\n${err.slice(-3000)}`));
      else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  });
}

async function main() {
  registry = await startRegistry(work);
  const base = `${registry.host}/bench/busybox:latest`;
  await pushBaseImage(base, root, work);

  const ctx = join(work, 'ctx');
  mkdirSync(ctx);
  // The marker is computed, so it appears only once the command runs, not in the step's name;
  // the build argument makes every run miss the cache.
  writeFileSync(join(ctx, 'Dockerfile'), `FROM ${base}\nARG RUN_ID\nRUN echo ready-$((40+2)) && sleep 600\n`);

  const tools = {
    builder: (signal, i) => stopTime(BUILDER, ['build', '--root', root, '--network', 'none', '--progress', 'plain', '--build-arg', `RUN_ID=${i}`, ctx], signal),
    buildkit: (signal, i) =>
      stopTime(DOCKER, ['build', '--network=none', '--progress=plain', '--build-arg', `RUN_ID=${i}`, ctx], signal, { DOCKER_BUILDKIT: '1' }),
  };
  const names = Object.keys(tools).filter((t) => t !== 'buildkit' || dockerWorks);
  const results = [];
  for (const signal of ['SIGINT', 'SIGTERM']) {
    log(`${signal} during a RUN step: ${RUNS} runs`);
    const times = Object.fromEntries(names.map((n) => [n, []]));
    for (let i = 0; i < RUNS; i++) {
      // Interleaved, alternating which goes first.
      for (const n of i % 2 === 0 ? names : [...names].reverse()) times[n].push(await tools[n](signal, `${signal}-${i}`));
    }
    const row = { scenario: `${signal} during a RUN step`, builderMs: median(times.builder) };
    if (times.buildkit) {
      row.buildkitMs = median(times.buildkit);
      row.ratio = row.builderMs / row.buildkitMs;
    }
    results.push(row);
  }

  if (values.json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return;
  }
  const fmt = (ms) => (ms === undefined ? '-' : `${Math.round(ms)} ms`);
  console.log(`\nmedians, signal to exit; builder ${dockerWorks ? 'vs BuildKit (docker build, dockerd 20.10)' : '(no Docker engine: BuildKit not measured)'}\n`);
  console.log('| scenario | builder | BuildKit | ratio |');
  console.log('|---|---|---|---|');
  for (const r of results) console.log(`| ${r.scenario} | ${fmt(r.builderMs)} | ${fmt(r.buildkitMs)} | ${r.ratio === undefined ? '-' : `${r.ratio.toFixed(2)}×`} |`);
}

await runBench(main, { work, registry: () => registry, dockerWorks });

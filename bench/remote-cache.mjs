#!/usr/bin/env node
// A cache shared through a registry: one machine builds and exports its cache, a fresh one (empty
// state, base image not local) builds the same inputs importing it. Times the fresh build and
// counts cache hits, builder (`--cache-to/--cache-from type=registry`, and `type=inline`) side by
// side with BuildKit's inline cache (Docker 20.10: `BUILDKIT_INLINE_CACHE=1` then `--cache-from`
// the pushed image; 20.10 cannot export a registry cache without buildx). Runs interleaved;
// medians and builder/BuildKit ratios.
//
//   node bench/remote-cache.mjs [--runs 3] [--mb 20]
//
// Needs a compiled builder (npm run build), the CNCF registry, and (for BuildKit) a Docker engine.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BUILDER, DOCKER, dockerWorks as probeDocker, log, median, pushBaseImage, runBench, startRegistry, timed } from './lib.mjs';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, mb: { type: 'string', default: '20' } } });
const RUNS = Number(values.runs);
const MB = Number(values.mb);
const dockerWorks = probeDocker();

const work = mkdtempSync(join(tmpdir(), 'builder-bench-remote-'));
const ctx = join(work, 'ctx');
let registry;

function makeProject(base) {
  mkdirSync(join(ctx, 'src'), { recursive: true });
  writeFileSync(join(ctx, 'package.json'), '{"name":"bench"}\n');
  for (let i = 0; i < 200; i++) writeFileSync(join(ctx, 'src', `f${i}.js`), `export const v${i} = ${i};\n`.repeat(20));
  // The dependency install is slow and big; the build stage's layers feed only a small COPY --from.
  writeFileSync(
    join(ctx, 'Dockerfile'),
    `FROM ${base} AS build
WORKDIR /app
COPY package.json .
RUN sleep 2 && head -c ${MB * 1024 * 1024} /dev/urandom > deps.bin
COPY src ./src
RUN sleep 1 && mkdir dist && cat src/*.js | wc -c > dist/size.txt

FROM ${base}
COPY --from=build /app/dist /srv/dist
CMD ["cat", "/srv/dist/size.txt"]
`,
  );
}

/** Steps of a builder `--progress json` run: how many there were, how many were cache hits. */
function builderHits(stderr) {
  const steps = new Map();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const e = JSON.parse(line);
    if (e.type === 'step' && e.name.startsWith('[') && !e.name.includes('internal')) steps.set(e.name, steps.get(e.name) === 'cached' ? 'cached' : e.status);
  }
  const names = [...steps.keys()].filter((n) => !/\] FROM /.test(n));
  return { steps: names.length, cached: names.filter((n) => steps.get(n) === 'cached').length };
}

/** The same from BuildKit's `--progress=plain` output. */
function buildkitHits(stderr) {
  const named = new Map();
  const cached = new Set();
  for (const line of stderr.split('\n')) {
    const step = /^#(\d+) \[(?:\w+ )?\d+\/\d+\] (?!FROM)/.exec(line);
    if (step) named.set(step[1], line);
    const hit = /^#(\d+) CACHED/.exec(line);
    if (hit) cached.add(hit[1]);
  }
  return { steps: named.size, cached: [...named.keys()].filter((id) => cached.has(id)).length };
}

let round = 0;
const tools = {
  'builder registry cache': async () => {
    const ref = `${registry.host}/bench/cache:r${++round}`;
    const exporter = join(work, `exporter-${round}`);
    await timed(BUILDER, ['build', '--root', exporter, '--network', 'none', '--progress', 'quiet', '--cache-to', `type=registry,ref=${ref},mode=max`, ctx]);
    rmSync(exporter, { recursive: true, force: true });
    const fresh = join(work, `fresh-${round}`);
    const r = await timed(BUILDER, ['build', '--root', fresh, '--network', 'none', '--progress', 'json', '--cache-from', `type=registry,ref=${ref}`, ctx]);
    rmSync(fresh, { recursive: true, force: true });
    return { ms: r.ms, ...builderHits(r.err) };
  },
  'builder inline cache': async () => {
    const image = `${registry.host}/bench/app-builder:r${++round}`;
    const exporter = join(work, `exporter-${round}`);
    await timed(BUILDER, ['build', '--root', exporter, '--network', 'none', '--progress', 'quiet', '-t', image, '--push', '--cache-to', 'type=inline', ctx]);
    rmSync(exporter, { recursive: true, force: true });
    const fresh = join(work, `fresh-${round}`);
    const r = await timed(BUILDER, ['build', '--root', fresh, '--network', 'none', '--progress', 'json', '--cache-from', `type=registry,ref=${image}`, ctx]);
    rmSync(fresh, { recursive: true, force: true });
    return { ms: r.ms, ...builderHits(r.err) };
  },
  'BuildKit inline cache': async () => {
    const image = `${registry.host}/bench/app-docker:r${++round}`;
    const env = { DOCKER_BUILDKIT: '1' };
    await timed(DOCKER, ['build', '--network=none', '-q', '--build-arg', 'BUILDKIT_INLINE_CACHE=1', '-t', image, ctx], { env });
    await timed(DOCKER, ['push', '-q', image]);
    // Cold as a fresh machine is: no build cache, neither the image nor the base.
    spawnSync(DOCKER, ['builder', 'prune', '-af'], { stdio: 'ignore' });
    spawnSync(DOCKER, ['image', 'prune', '-af'], { stdio: 'ignore' });
    spawnSync(DOCKER, ['image', 'rm', '-f', image], { stdio: 'ignore' });
    const r = await timed(DOCKER, ['build', '--network=none', '--progress=plain', '--cache-from', image, ctx], { env });
    return { ms: r.ms, ...buildkitHits(r.err) };
  },
};

async function main() {
  registry = await startRegistry(work);
  const base = `${registry.host}/bench/busybox:latest`;
  await pushBaseImage(base, join(work, 'base-root'), work);
  makeProject(base);
  const names = Object.keys(tools).filter((n) => dockerWorks || !n.startsWith('BuildKit'));
  const results = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const n of i % 2 === 0 ? names : [...names].reverse()) results[n].push(await tools[n]());
  }
  const reference = results['BuildKit inline cache'];
  console.log(`\nA fresh machine builds with a cache another one exported (${MB} MB dependency layer), medians of ${RUNS} interleaved runs\n`);
  console.log('| tool | fresh build | steps cached | vs BuildKit inline |');
  console.log('|---|---|---|---|');
  for (const n of names) {
    const ms = median(results[n].map((r) => r.ms));
    const last = results[n].at(-1);
    const ratio = reference ? `${(ms / median(reference.map((r) => r.ms))).toFixed(2)}×` : '-';
    const spread = `${(Math.min(...results[n].map((r) => r.ms)) / 1000).toFixed(2)}–${(Math.max(...results[n].map((r) => r.ms)) / 1000).toFixed(2)}`;
    console.log(`| ${n} | ${(ms / 1000).toFixed(2)} s (${spread}) | ${last.cached}/${last.steps} | ${ratio} |`);
  }
}

await runBench(main, { work, registry: () => registry, dockerWorks });

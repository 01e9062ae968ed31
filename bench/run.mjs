#!/usr/bin/env node
// builder side by side with BuildKit (in dockerd) and buildah, on the scenarios of
// bench/scenarios/: interleaved runs (each on a settled machine) after a warm-up, medians with min–max, builder/peer ratios,
// cache hits, builder's peak memory. Prints a Markdown table; writes JSON, Markdown and an SVG
// chart to bench/results/.
//
//   npm run bench [-- --scenario NAME …] [--runs N] [--quick] [--install-peers]
//                 [--peers buildkit,buildah] [--docker private|running] [--out DIR]
//
// Needs a compiled builder (npm run build), runc, docker-registry, skopeo and busybox-static.
// Every tool pulls its bases from one registry this script starts on 127.0.0.1; nothing leaves
// loopback. BuildKit runs in a private Docker engine started here (own socket and data root,
// removed afterwards) unless `--docker running` uses the engine the docker CLI reaches: its
// unused images and build cache are pruned before each cold run.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { has, log, pushBaseImage, settle, sh, startRegistry } from './lib/env.mjs';
import { DISTRO_FILLER, SOURCE_TREE, writeTree } from './lib/fixtures.mjs';
import { PEER_LABELS, markdownTable, orderingLesson, ratio, summarize, svgChart } from './lib/report.mjs';
import { DOCKER, buildahTool, builderTool, buildkitTool, memorySampling } from './lib/tools.mjs';
import { scenarios, selectScenarios } from './scenarios/index.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const PEERS = ['buildkit', 'buildah', 'skopeo'];
/** The peers that build: a scenario that names no peers of its own runs beside these. */
const BUILD_PEERS = ['buildkit', 'buildah'];

function usage(message) {
  log(`bench: ${message}\nusage: npm run bench [-- --scenario NAME …] [--runs N] [--quick] [--install-peers] [--peers ${PEERS.join(',')}] [--docker private|running] [--out DIR]`);
  log(`scenarios: ${scenarios.map((s) => `${s.name}${s.extra ? ' (extra)' : ''}`).join(', ')}, all`);
  process.exit(2);
}

let options;
try {
  options = parseArgs({
    options: {
      scenario: { type: 'string', multiple: true },
      runs: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'install-peers': { type: 'boolean', default: false },
      peers: { type: 'string', default: PEERS.join(',') },
      docker: { type: 'string', default: 'private' },
      out: { type: 'string', default: join(HERE, 'results') },
    },
  }).values;
} catch (err) {
  usage(err.message);
}

let selected;
try {
  selected = selectScenarios(options.scenario);
} catch (err) {
  usage(err.message);
}
/** Counted runs of a scenario that names no count of its own (see Scenario.runs). */
const DEFAULT_RUNS = 5;
const givenRuns = options.runs === undefined ? undefined : Number(options.runs);
if (givenRuns !== undefined && (!Number.isInteger(givenRuns) || givenRuns < 1)) usage(`--runs must be a whole number ≥ 1, not "${options.runs}"`);
/** --runs (or --quick) for every scenario, else each scenario's own count. */
const runsOf = (scenario) => (options.quick ? 1 : givenRuns ?? scenario.runs ?? DEFAULT_RUNS);
/** The count of a scenario without its own, for the heading and the JSON's top-level `runs`. */
const defaultRuns = runsOf({});
const warmups = options.quick ? 0 : 1;
const wantedPeers = options.peers.split(',').filter(Boolean);
for (const p of wantedPeers) if (!PEERS.includes(p)) usage(`unknown peer "${p}" (known: ${PEERS.join(', ')})`);
if (!['private', 'running'].includes(options.docker)) usage(`--docker must be private or running, not "${options.docker}"`);
if (!existsSync(join(HERE, '../dist/cli-bundle/start.cjs'))) usage('builder is not compiled: run npm run build first');
for (const cmd of ['runc', 'docker-registry', 'skopeo', 'busybox', 'tar']) {
  if (!has(cmd)) usage(`${cmd} is not installed (bash scripts/test.sh installs what the bench needs)`);
}

const work = mkdtempSync(join(tmpdir(), 'builder-bench-'));
const cleanups = [];
/** Runs and forgets every cleanup, newest first; synchronous, so it also works on a signal. */
function cleanup() {
  while (cleanups.length > 0) {
    try {
      cleanups.pop()();
    } catch (err) {
      log(`cleanup: ${err.message}`);
    }
  }
  unmountUnder(work);
  rmSync(work, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    log(`bench: ${signal}, cleaning up`);
    cleanup();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

/** apt-get installs a Debian package unless its command is already there; says so when it cannot. */
function aptInstall(pkg, cmd) {
  if (has(cmd)) return;
  log(`installing ${pkg}`);
  const apt = (...args) => spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  let r = apt('install', '-y', '-q', pkg);
  // A fresh machine may have no package lists yet.
  if (r.status !== 0 && apt('update', '-q').status === 0) r = apt('install', '-y', '-q', pkg);
  if (r.status !== 0) log(`${pkg} could not be installed (${(r.stderr || '').trim().split('\n').at(-1)}): going on without it`);
}

/** Unmounts whatever is still mounted under `dir` (a killed engine or buildah leaves overlays). */
function unmountUnder(dir) {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1])
    .filter((m) => m?.startsWith(`${dir}/`))
    .sort()
    .reverse();
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

/** The peers that can run here, each as a tool; says in one line why a wanted one cannot. */
function startPeers() {
  if (options['install-peers']) {
    if (wantedPeers.includes('buildkit')) aptInstall('docker.io', 'dockerd');
    if (wantedPeers.includes('buildah')) aptInstall('buildah', 'buildah');
  }
  const tools = {};
  const versions = {};
  if (wantedPeers.includes('buildkit')) {
    let host;
    if (options.docker === 'running') {
      if (spawnSync(DOCKER, ['info'], { stdio: 'ignore' }).status !== 0) log('BuildKit: no Docker engine answers (start one, or use --docker private): going on without it');
      else host = process.env.DOCKER_HOST ?? '';
    } else if (!has('dockerd') || !existsSync(DOCKER)) {
      log('BuildKit: dockerd is not installed (npm run bench -- --install-peers installs docker.io): going on without it');
    } else {
      const dir = join(work, 'dockerd');
      // Stopping also clears what a start that failed half-way left.
      cleanups.push(() => spawnSync('bash', [join(HERE, '../scripts/reference-dockerd.sh'), 'stop', dir], { stdio: 'ignore' }));
      const r = spawnSync('bash', [join(HERE, '../scripts/reference-dockerd.sh'), 'start', dir], { encoding: 'utf8' });
      host = /DOCKER_HOST=(\S+)/.exec(r.stdout)?.[1];
      if (!host) log(`BuildKit: the private Docker engine did not start (${r.stderr.trim().split('\n').at(-1)}): going on without it`);
    }
    if (host !== undefined) {
      tools.buildkit = buildkitTool(host || undefined);
      versions.buildkit = `Docker ${sh(DOCKER, ['version', '--format', '{{.Server.Version}}'], { env: host ? { DOCKER_HOST: host } : {} }).stdout.trim()} (${options.docker} engine)`;
    }
  }
  if (wantedPeers.includes('buildah')) {
    if (!has('buildah')) log('buildah: not installed (npm run bench -- --install-peers installs it): going on without it');
    else {
      const root = join(work, 'buildah');
      tools.buildah = buildahTool(root);
      versions.buildah = sh('buildah', ['--version']).stdout.trim();
      cleanups.push(() => {
        tools.buildah.reset();
        unmountUnder(root);
      });
    }
  }
  if (wantedPeers.includes('skopeo')) {
    // Only the transfer scenarios run it (skopeo copy is a floor for moving layers, not a builder).
    tools.skopeo = { name: 'skopeo', reset: () => {} };
    versions.skopeo = sh('skopeo', ['--version']).stdout.trim();
  }
  return { tools, versions };
}

/** The environment scenarios build on: the registry, base images and the source tree, made on first use. */
function makeEnv(registry) {
  const once = (make) => {
    let value;
    return () => (value ??= make());
  };
  const images = {
    busybox: once(() => pushBaseImage({ dir: join(work, 'base-busybox'), ref: `${registry}/bench/busybox:1` })),
    distro: once(() => {
      log('making the distro-sized base image');
      return pushBaseImage({ dir: join(work, 'base-distro'), ref: `${registry}/bench/distro:1`, filler: DISTRO_FILLER });
    }),
  };
  return {
    work,
    registry,
    image: async (name) => (await images[name]()).ref,
    sourceTree: once(async () => {
      log(`generating the source tree (${SOURCE_TREE.files} files)`);
      const dir = join(work, 'contexts', 'source-tree');
      return { dir, textFiles: writeTree(dir, SOURCE_TREE) };
    }),
  };
}

/** Runs one scenario: setup, a warm-up round, then its interleaved rounds (runsOf); returns its figures. */
async function runScenario(scenario, env, peers) {
  const runs = runsOf(scenario);
  const tools = [builderTool(join(work, 'state', scenario.name)), ...Object.values(peers).filter((t) => (scenario.peers ?? BUILD_PEERS).includes(t.name))];
  const figures = Object.fromEntries(tools.map((t) => [t.name, { runs: [], hits: undefined, peakBytes: 0, peaks: [] }]));
  const failed = (tool) => figures[tool.name].error !== undefined;
  const attempt = async (tool, step) => {
    try {
      return await step();
    } catch (err) {
      figures[tool.name].error = err.message;
      log(`  ${tool.name} failed: ${err.message.split('\n').slice(0, 3).join(' / ')}`);
    }
  };
  for (const tool of tools) await attempt(tool, () => tool.reset());
  let plan;
  try {
    plan = await scenario.prepare(env);
  } catch (err) {
    // Its inputs could not be made: every tool fails the scenario, the bench goes on.
    log(`  preparing failed: ${err.message}`);
    plan = { run: () => Promise.reject(err) };
  }
  for (const tool of tools) if (plan.setup && !failed(tool)) await attempt(tool, () => plan.setup(tool));
  for (let round = 1 - warmups; round <= runs; round++) {
    await plan.beforeRound?.(round);
    // Interleaved, and each round starts one tool later, so none always runs first.
    const offset = ((round % tools.length) + tools.length) % tools.length;
    for (const tool of [...tools.slice(offset), ...tools.slice(0, offset)]) {
      if (failed(tool)) continue;
      await attempt(tool, async () => {
        await plan.before?.(tool, round);
        await settle();
        memorySampling.on = round < 1 || warmups === 0;
        const r = await plan.run(tool, round);
        const f = figures[tool.name];
        f.peakBytes = Math.max(f.peakBytes, r.peakBytes ?? 0);
        if (round < 1) return;
        f.runs.push(r.ms);
        if (r.steps !== undefined) f.hits = { cached: r.cached, steps: r.steps };
        if (r.peakBytes) f.peaks.push(Math.round(r.peakBytes / 2 ** 20));
      });
    }
    log(`  ${round < 1 ? 'warm-up' : `run ${round}/${runs}`}: ${tools.map((t) => `${t.name} ${failed(t) ? 'failed' : figures[t.name].runs.length ? `${(figures[t.name].runs.at(-1) / 1000).toFixed(2)} s` : 'done'}`).join(', ')}`);
  }
  await plan.teardown?.();
  for (const tool of tools) await attempt(tool, () => tool.reset());
  const summaries = {};
  for (const [name, f] of Object.entries(figures)) {
    if (f.error) summaries[name] = { error: f.error };
    else summaries[name] = { ...summarize(f.runs), runs: f.runs, ...(f.hits ? { hits: f.hits } : {}), ...(name === 'builder' && f.peakBytes ? { peakRssMB: f.peakBytes / 2 ** 20, peakRssMBPerRun: f.peaks } : {}) };
  }
  const ratios = {};
  for (const p of PEERS) {
    const r = summaries.builder.error || !summaries[p] || summaries[p].error ? undefined : ratio(summaries.builder, summaries[p]);
    if (r !== undefined) ratios[p] = r;
  }
  return { name: scenario.name, title: scenario.title, ...(scenario.goal !== undefined ? { goal: scenario.goal } : {}), runs, tools: summaries, ratios };
}

/** The scenarios that had a count of runs of their own, for the heading: " (15 for: a; b)". */
function moreRuns(result) {
  const counts = [...new Set(result.scenarios.map((s) => s.runs).filter((n) => n !== result.runs))];
  return counts.map((n) => ` (${n} for: ${result.scenarios.filter((s) => s.runs === n).map((s) => s.title).join('; ')})`).join('');
}

/** Writes `text` to `path` through a temporary file, so a reader never sees half a file. */
function writeAtomic(path, text) {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

async function main() {
  const registry = await startRegistry(join(work, 'registry'));
  cleanups.push(registry.stop);
  const { tools: peers, versions } = startPeers();
  const env = makeEnv(registry.host);
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, kernel: release(), node: process.version },
    builder: JSON.parse(readFileSync(join(HERE, '../package.json'), 'utf8')).version,
    peers: Object.keys(peers),
    versions,
    runs: defaultRuns,
    warmups,
    scenarios: [],
  };
  const started = performance.now();
  for (const scenario of selected) {
    log(`${scenario.name}: ${scenario.title}`);
    const t0 = performance.now();
    const figures = await runScenario(scenario, env, peers);
    // Where the bench's own time goes, to keep the default set within its budget.
    result.scenarios.push({ ...figures, seconds: Math.round((performance.now() - t0) / 1000) });
  }
  result.minutes = (performance.now() - started) / 60000;
  const lesson = orderingLesson(result);
  const table = `${markdownTable(result)}${lesson ? `\n\n${lesson}` : ''}`;
  result.peakRssMB = Math.max(0, ...result.scenarios.map((s) => s.tools.builder?.peakRssMB ?? 0));
  const heading =
    `builder ${result.builder} beside ${result.peers.map((p) => `${PEER_LABELS[p]} (${versions[p]})`).join(' and ') || 'no peer'}, ${result.machine.cpus} cores; ` +
    `medians (min–max) of ${defaultRuns} interleaved run${defaultRuns > 1 ? 's' : ''}${moreRuns(result)}${warmups ? ` after ${warmups} warm-up` : ', no warm-up'}; ` +
    `builder's peak RSS ${Math.round(result.peakRssMB)} MB at most; ${result.minutes.toFixed(1)} min in all.`;
  console.log(`\n${heading}\n\n${table}`);
  mkdirSync(options.out, { recursive: true });
  // A smoke run (--quick) does not replace the figures of the last real one.
  const base = join(options.out, options.quick ? 'quick' : 'latest');
  writeAtomic(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  writeAtomic(`${base}.md`, `${heading}\n\n${table}\n`);
  writeAtomic(`${base}.svg`, svgChart(result));
  log(`wrote ${base}.json, .md and .svg`);
}

try {
  await main();
} finally {
  cleanup();
}

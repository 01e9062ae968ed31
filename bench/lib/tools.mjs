// The tools under comparison, behind one shape: `command(opts)` (what to spawn for a build),
// `build(opts)` (run it, time it, count its cache hits), `push(ref)`, and `reset()` (drop
// everything, base images included, so the next build is cold). builder runs on a state directory
// of its own; BuildKit in a Docker engine (a private one the bench starts, unless told to use the
// running engine); buildah on a storage root of its own. Cache hits are counted over the steps
// that make a layer (RUN, COPY, ADD), the same way for every tool.

import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sh, timed } from './env.mjs';

export const BUILDER = fileURLToPath(new URL('../../bin/builder', import.meta.url));
export const PEAK_RSS = fileURLToPath(new URL('../peak-rss.cjs', import.meta.url));
export const DOCKER = '/usr/bin/docker';

const LAYER_STEP = /^(RUN|COPY|ADD)\b/;

/** Steps and cache hits of a builder `--progress json` run. */
export function builderHits(stderr) {
  const steps = new Map();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const e = JSON.parse(line);
    const instruction = e.type === 'step' ? /^\[[^\]]*\] (.*)$/.exec(e.name)?.[1] : undefined;
    if (instruction && LAYER_STEP.test(instruction) && steps.get(e.id) !== 'cached') steps.set(e.id, e.status);
  }
  return { steps: steps.size, cached: [...steps.values()].filter((s) => s === 'cached').length };
}

/** The same from BuildKit's `--progress=plain` output (`#7 [2/3] RUN …`, later `#7 CACHED`). */
export function buildkitHits(stderr) {
  const steps = new Set();
  const cached = new Set();
  for (const line of stderr.split('\n')) {
    const step = /^#(\d+) \[[^\]]*\d+\/\d+\] (.*)$/.exec(line);
    if (step && LAYER_STEP.test(step[2])) steps.add(step[1]);
    const hit = /^#(\d+) CACHED$/.exec(line);
    if (hit) cached.add(hit[1]);
  }
  return { steps: steps.size, cached: [...steps].filter((id) => cached.has(id)).length };
}

/** The same from buildah's output (`STEP 2/3: RUN …`, then `--> Using cache …` on a hit). */
export function buildahHits(output) {
  let steps = 0;
  let cached = 0;
  let current;
  for (const line of output.split('\n')) {
    const step = /^(?:\[\d+\/\d+\] )?STEP \d+\/\d+: (.*)$/.exec(line);
    if (step) {
      current = LAYER_STEP.test(step[1]);
      if (current) steps++;
    } else if (current && line.startsWith('--> Using cache')) {
      cached++;
      current = false;
    }
  }
  return { steps, cached };
}

/** Command-line flags shared by the three tools' `build`. */
function buildFlags({ file, tag, noCache, buildArgs = {} }) {
  return [
    '-f',
    file,
    ...(tag ? ['-t', tag] : []),
    ...(noCache ? ['--no-cache'] : []),
    ...Object.entries(buildArgs).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]),
  ];
}

/**
 * Whether builder's runs sample its process tree's memory (see timed). Sampling costs CPU beside
 * the build and no peer is sampled: run.mjs turns it on for the untimed warm-up only; timed runs
 * report node's own high-water mark.
 */
export const memorySampling = { on: true };

async function timedBuild(tool, opts, hits) {
  const { cmd, args, env } = tool.command(opts);
  const r = await timed(cmd, args, { env, sampleTree: tool.name === 'builder' && memorySampling.on });
  return { ms: r.ms, peakBytes: r.peakBytes, ...hits(`${r.out}\n${r.err}`) };
}

/** builder on the state directory `root`. */
export function builderTool(root) {
  let resets = 0;
  const tool = {
    name: 'builder',
    /** opts: file, context, tag, push, noCache, buildArgs, cacheFrom, cacheTo, root (another state directory). */
    command: (opts) => ({
      cmd: BUILDER,
      args: [
        'build',
        '--root',
        opts.root ?? root,
        '--network',
        'none',
        '--progress',
        'json',
        ...buildFlags(opts),
        ...(opts.push ? ['--push'] : []),
        ...(opts.cacheFrom ? ['--cache-from', opts.cacheFrom] : []),
        ...(opts.cacheTo ? ['--cache-to', opts.cacheTo] : []),
        opts.context,
      ],
      env: { NODE_OPTIONS: `--require ${PEAK_RSS}` },
    }),
    build: (opts) => timedBuild(tool, opts, builderHits),
    // Moved aside, not deleted: the bench's work directory, old states included, goes when the
    // bench ends. Deleting thousands of files just before the next timed run made that run's
    // file creation up to twice as slow on a journal-less ext4, which passes over inodes freed in
    // the last minutes: the bench's own cleanup was charged to the next build.
    reset: () => {
      if (existsSync(root)) renameSync(root, `${root}.old-${++resets}`);
    },
  };
  return tool;
}

/** BuildKit inside the Docker engine that `DOCKER_HOST` names (unset: the default socket). */
export function buildkitTool(dockerHost) {
  const env = { DOCKER_BUILDKIT: '1', ...(dockerHost ? { DOCKER_HOST: dockerHost } : {}) };
  const docker = (...args) => sh(DOCKER, args, { env });
  const tool = {
    name: 'buildkit',
    command: (opts) => ({
      cmd: DOCKER,
      args: ['build', '--network=none', '--progress=plain', ...buildFlags(opts), ...(opts.cacheFrom ? ['--cache-from', opts.cacheFrom] : []), opts.context],
      env: { ...env, ...opts.env },
    }),
    build: async (opts) => {
      const r = await timedBuild(tool, opts, buildkitHits);
      if (!opts.push) return r;
      const p = await tool.push(opts.tag);
      return { ...r, ms: r.ms + p.ms };
    },
    push: (ref) => timed(DOCKER, ['push', '-q', ref], { env }),
    // dockerd keeps a base layer while any image uses it: prune images too, so the next build pulls.
    reset: () => {
      docker('image', 'prune', '-af');
      docker('builder', 'prune', '-af');
    },
  };
  return tool;
}

/** buildah with its images and layers under `root` (runc, as crun fails on hybrid cgroups). */
export function buildahTool(root) {
  const globals = ['--root', join(root, 'storage'), '--runroot', join(root, 'run'), '--storage-driver', 'overlay'];
  const tool = {
    name: 'buildah',
    command: (opts) => ({
      cmd: 'buildah',
      args: [
        ...globals,
        'bud',
        '--layers',
        '--runtime=runc',
        '--network=none',
        '--tls-verify=false',
        ...buildFlags(opts),
        ...(opts.cacheFrom ? ['--cache-from', opts.cacheFrom] : []),
        ...(opts.cacheTo ? ['--cache-to', opts.cacheTo] : []),
        opts.context,
      ],
    }),
    build: async (opts) => {
      const r = await timedBuild(tool, opts, buildahHits);
      if (!opts.push) return r;
      const p = await tool.push(opts.tag);
      return { ...r, ms: r.ms + p.ms };
    },
    push: (ref) => timed('buildah', [...globals, 'push', '--quiet', '--tls-verify=false', ref, `docker://${ref}`]),
    reset: () => {
      sh('buildah', [...globals, 'rm', '--all']);
      sh('buildah', [...globals, 'rmi', '--all', '--force']);
    },
  };
  return tool;
}

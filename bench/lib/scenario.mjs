// The common kind of scenario: one Dockerfile built by every tool from a given starting state.
//
//   cold      every run starts with nothing: no cache, no base image (it is pulled again)
//   cached    the same build was done once before the runs: every run is a full cache hit
//   edit      built once before; before each round `edit` changes the context
//   no-cache  the base is local, every step runs (--no-cache)
//
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * What a scenario module exports.
 * @typedef {object} Scenario
 * @property {string} name what `--scenario` selects
 * @property {string} title the row's label
 * @property {number} [goal] the builder / BuildKit ratio to reach
 * @property {boolean} [extra] runs only when named
 * @property {number} [runs] counted runs unless --runs says (default 5)
 * @property {string[]} [peers] the peers it runs beside (default: BuildKit and buildah)
 * @property {(env: any) => Promise<Plan>} prepare writes its inputs; run.mjs passes the env
 */

/**
 * How to run a scenario: `run` is timed, the rest not. `setup` runs once per tool, `beforeRound`
 * once per round before any tool's run, `before` before each run, `teardown` once at the end.
 * @typedef {object} Plan
 * @property {(tool: any, round: number) => Promise<{ ms: number, steps?: number, cached?: number, peakBytes?: number }>} run
 * @property {(tool: any) => Promise<unknown>} [setup]
 * @property {(round: number) => unknown} [beforeRound]
 * @property {(tool: any, round: number) => unknown} [before]
 * @property {() => unknown} [teardown] after the last run
 */

/** Writes `text` as the Dockerfile of scenario `name`, outside any context; returns its path. */
export function writeDockerfile(env, name, text) {
  const dir = join(env.work, 'dockerfiles');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.Dockerfile`);
  writeFileSync(file, text);
  return file;
}

/**
 * Counted runs of a fully cached build: it builds nothing, and its fraction of a second is
 * start-up and bookkeeping, of which the host's noise is a larger share than of any other run.
 */
const CACHED_RUNS = 15;

/**
 * A scenario building `dockerfile(baseRef)` on `context(env)` (default: an empty directory)
 * from `state`; `base` names the base image (see run.mjs: busybox or distro).
 */
export function buildScenario({ name, title, goal, extra, base = 'busybox', state, dockerfile, context, edit }) {
  return {
    name,
    title,
    goal,
    extra,
    runs: state === 'cached' ? CACHED_RUNS : undefined,
    async prepare(env) {
      const baseRef = await env.image(base);
      const dir = context ? await context(env) : join(env.work, 'contexts', name);
      mkdirSync(dir, { recursive: true });
      const opts = { file: writeDockerfile(env, name, dockerfile(baseRef)), context: dir };
      return {
        setup: state === 'cold' ? undefined : (tool) => tool.build(opts),
        beforeRound: state === 'edit' ? (round) => edit(env, round) : undefined,
        before: state === 'cold' ? (tool) => tool.reset() : undefined,
        run: (tool) => tool.build({ ...opts, noCache: state === 'no-cache' }),
      };
    },
  };
}

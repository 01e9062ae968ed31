// Runs a share of the fuzz inputs through parseDockerfile, compile and plan() (the library side
// of --dry-run) in a worker thread, so that the test can stop it when one input hangs. Posts
// `start` before each input (the watchdog's heartbeat), `crash` for each failure that is not a
// Dockerfile error with a place in the file, and `done` at the end.

import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { Definition } from '../../src/definition/index.js';
import { DockerfileError, compile, parseDockerfile } from '../../src/frontend/index.js';
import { formatPlan, plan } from '../../src/client/plan.js';
import type { ContainerConfig, ImageConfigFile, Platform } from '../../src/oci/types.js';
import { linuxAmd64 } from '../frontend/helpers.js';
import { inputSeed, mutate } from './mutate.js';

export interface WorkerInput {
  seed: number;
  /** Inputs `first`, `first + stride`, … below `end`. */
  first: number;
  end: number;
  stride: number;
  corpus: string[];
  /** A directory of its own, for plan()'s context. */
  dir: string;
}

export type WorkerMessage =
  | { type: 'start'; index: number }
  | { type: 'crash'; index: number; stage: string; error: string }
  | { type: 'done'; runs: number; accepted: number; rejected: number; slowest: { index: number; ms: number } };

/** Errors of the frontend that are not about one line: they name the file as a whole. */
const FILE_LEVEL = /^(the file has no instructions|the Dockerfile has no FROM instruction|target stage ".*" could not be found)/;

/** JavaScript's own errors: a frontend that throws (or wraps) one of these has a bug. */
const BUILTIN_ERRORS: ReadonlySet<unknown> = new Set([TypeError, RangeError, ReferenceError, SyntaxError, URIError, EvalError]);

/** Why an error is a crash rather than a diagnosis, or undefined when it is a proper one. */
export function crashReason(err: unknown): string | undefined {
  if (!(err instanceof DockerfileError)) return `not a DockerfileError`;
  if (err.file !== 'Dockerfile') return `names the file ${JSON.stringify(err.file)}`;
  if (!(err.line > 0) && !FILE_LEVEL.test(err.reason)) return 'names no line';
  // dispatch wraps whatever it catches: a TypeError inside is still a bug
  for (let cause = err.cause; cause instanceof Error; cause = cause.cause) {
    if (BUILTIN_ERRORS.has(cause.constructor)) return `wraps a ${cause.name}`;
  }
  return undefined;
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message.slice(0, 500)}\n${err.stack?.split('\n').slice(1, 8).join('\n') ?? ''}` : String(err);
}

/** Every vertex's inputs are in the Definition. */
function checkDefinition(def: Definition): void {
  for (const [digest, v] of def.vertices) {
    for (const input of v.inputs) if (!def.vertices.has(input)) throw new Error(`vertex ${digest} reads ${input}, which is not in the Definition`);
  }
}

/** Resolves any image name (plan() already covers unresolved ones); some carry ONBUILD triggers. */
const configs: Record<string, ContainerConfig> = {
  onbuild: { OnBuild: ['RUN echo triggered', 'COPY --from=builder /out /out'], Cmd: ['sh'] },
  badonbuild: { OnBuild: ['ONBUILD RUN x', 'FROM x', 'BOGUS', 'COPY --from=$X a b', 'RUN ${'] },
  busybox: { Env: ['PATH=/bin', 'A=from-image', 'A=twice'] },
  node: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin'], WorkingDir: '/srv', User: 'node', Entrypoint: ['docker-entrypoint.sh'] },
};
const resolver = async (ref: string, platform: Platform) => {
  const name = ref.replace(/[:@].*$/, '').split('/').pop() ?? '';
  const hex = createHash('sha256').update(ref).digest('hex');
  const image: ImageConfigFile = {
    os: platform.os,
    architecture: platform.architecture,
    config: structuredClone(configs[name] ?? { Env: ['PATH=/usr/bin:/bin'] }),
    rootfs: { type: 'layers', diff_ids: [`sha256:${hex}`] },
  };
  return { ref: `docker.io/library/${name || 'x'}:fuzz@sha256:${hex}`, config: image };
};

async function main(): Promise<void> {
  const input = workerData as WorkerInput;
  const port = parentPort;
  if (!port) throw new Error('must run as a worker thread');
  const post = (m: WorkerMessage) => port.postMessage(m);
  let runs = 0;
  let accepted = 0;
  let rejected = 0;
  const slowest = { index: -1, ms: 0 };
  const dockerfile = join(input.dir, 'Dockerfile');
  for (let index = input.first; index < input.end; index += input.stride) {
    post({ type: 'start', index });
    const started = performance.now();
    const text = mutate(inputSeed(input.seed, index), input.corpus);
    runs++;
    let ok = true;
    const attempt = async (stage: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        ok = false;
        const why = crashReason(err);
        if (why) post({ type: 'crash', index, stage, error: `${why}: ${describe(err)}` });
      }
    };
    // Every input goes through plan(); every fourth also through compile() with base images
    // that resolve (their configs, ONBUILD triggers), which plan() leaves unresolved.
    if (index % 4 === 0) await attempt('parse+compile', async () => {
      const result = await compile(parseDockerfile(text, 'Dockerfile'), {
        file: 'Dockerfile',
        buildArgs: index % 7 === 0 ? { A: 'from-cli', UNUSED: 'x' } : {},
        ...(index % 11 === 0 ? { target: 'builder' } : {}),
        platform: linuxAmd64,
        resolveImage: resolver,
        dockerignore: [],
      });
      checkDefinition(result.definition);
      JSON.stringify(result.image);
    });
    await writeFile(dockerfile, text);
    post({ type: 'start', index }); // the watchdog bounds each of the two runs
    await attempt('plan', async () => {
      const p = await plan({ context: input.dir, root: join(input.dir, 'no-state'), network: 'none' });
      checkDefinition(p.compiled.definition);
      formatPlan(p);
    });
    if (ok) accepted++;
    else rejected++;
    const ms = performance.now() - started;
    if (ms > slowest.ms) Object.assign(slowest, { index, ms: Math.round(ms) });
  }
  post({ type: 'done', runs, accepted, rejected, slowest });
}

await main();

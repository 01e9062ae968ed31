// Grammar-aware fuzzing of the frontend: mutated corpus Dockerfiles through parseDockerfile,
// compile and plan() (the library side of --dry-run), in worker threads so that a hung input
// can be stopped. Every input must either compile or fail with a DockerfileError that names the
// file and line; any other error is a crash, and an input still running after the watchdog's
// limit is a hang (a generous bound, not a speed test).
//
//   FUZZ_SEED=<n>   seed (printed; default fixed, so CI runs the same inputs every time)
//   FUZZ_RUNS=<n>   number of inputs (default 10,000)
//   FUZZ_ONLY=<i>   replay input i alone and print it

import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inputSeed, mutate } from './mutate.js';
import type { WorkerInput, WorkerMessage } from './worker.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261201) >>> 0;
const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const ONLY = process.env.FUZZ_ONLY === undefined ? undefined : Number(process.env.FUZZ_ONLY);
/** One input running longer than this is a hang. */
const WATCHDOG_MS = 10_000;

const CORPUS_DIR = fileURLToPath(new URL('../corpus/dockerfiles/', import.meta.url));
const corpus = readdirSync(CORPUS_DIR)
  .sort()
  .map((name) => readFileSync(join(CORPUS_DIR, name, 'Dockerfile'), 'utf8'));

let dir: string;
let workerFile: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'builder-fuzz-'));
  // Worker threads run plain JavaScript: bundle the worker and the sources it imports.
  workerFile = join(dir, 'worker.mjs');
  await build({
    entryPoints: [fileURLToPath(new URL('./worker.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: workerFile,
    logLevel: 'error',
  });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Failure {
  index: number;
  what: string;
}

/** Runs inputs `first, first + stride, …` in one worker; resolves with its counts and failures. */
type Totals = Omit<Extract<WorkerMessage, { type: 'done' }>, 'type'>;
const NONE: Totals = { runs: 0, accepted: 0, rejected: 0, slowest: { index: -1, ms: 0 } };

function runWorker(first: number, end: number, stride: number, failures: Failure[]): Promise<Totals> {
  return new Promise((resolve, reject) => {
    void mkdtemp(join(dir, 'w-')).then((ctx) => {
      const data: WorkerInput = { seed: SEED, first, end, stride, corpus, dir: ctx };
      const worker = new Worker(workerFile, { workerData: data });
      let current = -1;
      let since = Date.now();
      const watchdog = setInterval(() => {
        if (current < 0 || Date.now() - since < WATCHDOG_MS) return;
        clearInterval(watchdog);
        failures.push({ index: current, what: `hang: still running after ${WATCHDOG_MS / 1000} s` });
        void worker.terminate();
        // The rest of this worker's share is not run: the hang is the finding.
        resolve(NONE);
      }, 250);
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'start') {
          current = m.index;
          since = Date.now();
        } else if (m.type === 'crash') {
          failures.push({ index: m.index, what: `${m.stage}: ${m.error}` });
        } else {
          clearInterval(watchdog);
          resolve(m);
        }
      });
      worker.on('error', (err) => {
        clearInterval(watchdog);
        failures.push({ index: current, what: `worker died: ${err.stack ?? String(err)}` });
        resolve(NONE);
      });
      worker.on('exit', (code) => {
        clearInterval(watchdog);
        if (code !== 0) resolve(NONE);
      });
    }, reject);
  });
}

describe('frontend fuzzing', () => {
  it(`${ONLY === undefined ? RUNS : 1} mutated Dockerfiles: no crash, no hang (seed ${SEED})`, async () => {
    const failures: Failure[] = [];
    const started = Date.now();
    let totals: Totals[];
    if (ONLY !== undefined) {
      console.log(`input ${ONLY} of seed ${SEED}:\n${mutate(inputSeed(SEED, ONLY), corpus)}`);
      totals = [await runWorker(ONLY, ONLY + 1, 1, failures)];
    } else {
      const workers = Math.max(1, Math.min(2, availableParallelism()));
      totals = await Promise.all(Array.from({ length: workers }, (_, w) => runWorker(w, RUNS, workers, failures)));
    }
    const runs = totals.reduce((n, t) => n + t.runs, 0);
    const rejected = totals.reduce((n, t) => n + t.rejected, 0);
    const slowest = totals.map((t) => t.slowest).sort((a, b) => b.ms - a.ms)[0] ?? NONE.slowest;
    console.log(
      `fuzz seed ${SEED}: ${runs} inputs in ${((Date.now() - started) / 1000).toFixed(1)} s, ${runs - rejected} compiled, ` +
        `${rejected} rejected with a file:line error, ${failures.length} failures; slowest input ${slowest.index} (${slowest.ms} ms)`,
    );
    // One example of each kind of failure (first line of the message).
    const kinds = new Map<string, Failure>();
    for (const f of failures) {
      const kind = f.what.split('\n')[0]?.replace(/\d+/g, 'N') ?? '';
      if (!kinds.has(kind)) kinds.set(kind, f);
    }
    const saved: string[] = [];
    for (const f of [...kinds.values()].slice(0, 10)) {
      const file = join(tmpdir(), `builder-fuzz-${SEED}-${f.index}.Dockerfile`);
      await writeFile(file, mutate(inputSeed(SEED, f.index), corpus));
      saved.push(`input ${f.index} (saved as ${file}; replay: FUZZ_SEED=${SEED} FUZZ_ONLY=${f.index} npx vitest run test/fuzz):\n  ${f.what.split('\n').slice(0, 3).join('\n  ')}`);
    }
    expect(saved, saved.join('\n\n')).toEqual([]);
    expect(runs).toBe(ONLY === undefined ? RUNS : 1);
  });
});

// The solver through its seams: a real native snapshotter, content store and cache index in a
// temporary state directory, with two fakes behind the solver's own interfaces. The executor
// runs a handful of shell commands by writing into the rootfs as they would; the image source
// "pulls" a base by storing a real one-file layer tar. Each test compiles a Dockerfile with the
// real frontend and checks what a user would see: which steps ran or were cached, what the
// filesystem holds, how a failure is reported.

import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CacheIndex, type LayerRecord } from '../../src/cache/cache-index.js';
import { StatCache } from '../../src/cache/checksum.js';
import { ContentStore } from '../../src/cache/content-store.js';
import type { Platform } from '../../src/definition/index.js';
import { chainIDs, sha256 } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/types.js';
import type { RunResult, RunSpec } from '../../src/executor/runc.js';
import { compile, parseDockerfile, type CompileResult } from '../../src/frontend/index.js';
import type { ProgressEvent, StepEvent } from '../../src/progress.js';
import { createSnapshotter, type LocalSnapshotter } from '../../src/snapshotter/index.js';
import { StepError } from '../../src/solver/errors.js';
import { Solver, type Executor, type ImageSource } from '../../src/solver/solver.js';

const PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };
const BASE = 'example.test/base:1';

/**
 * Runs `sh -c` commands of a tiny language on the rootfs, as the real commands would:
 * `echo TEXT > PATH`, `cat SRC > DEST`, `exit N` (with a line on stderr), and `meet NAME`, which
 * writes PATH /NAME and waits until every command named in `meet` has started (so two steps
 * only finish when they run at the same time).
 */
class FakeExecutor implements Executor {
  readonly ran: string[] = [];
  /** For each willRun(): how many pulls the base images had had by then. */
  readonly told: number[] = [];
  private readonly started = new Set<string>();
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly meetCount = 2) {}

  willRun(): void {
    this.told.push(images.pulls);
  }

  async run(spec: RunSpec): Promise<RunResult> {
    const [, flag, command = ''] = spec.args;
    if (flag !== '-c') throw new Error(`unexpected args ${JSON.stringify(spec.args)}`);
    this.ran.push(command);
    const inRoot = (p: string) => join(spec.rootfs, p);
    let m: RegExpExecArray | null;
    if ((m = /^echo (.*) > (\S+)$/.exec(command))) {
      await mkdir(dirname(inRoot(m[2]!)), { recursive: true });
      await writeFile(inRoot(m[2]!), `${m[1]}\n`);
      spec.stdout(Buffer.from(`wrote ${m[2]}\n`));
      return { exitCode: 0 };
    }
    if ((m = /^cat (\S+) > (\S+)$/.exec(command))) {
      const data = await readFile(inRoot(m[1]!)).catch(() => undefined);
      if (!data) {
        spec.stderr(Buffer.from(`cat: can't open '${m[1]}': No such file or directory\n`));
        return { exitCode: 1 };
      }
      await writeFile(inRoot(m[2]!), data);
      return { exitCode: 0 };
    }
    if ((m = /^exit (\d+)$/.exec(command))) {
      spec.stderr(Buffer.from('about to fail\n'));
      return { exitCode: Number(m[1]) };
    }
    if ((m = /^meet (\S+)$/.exec(command))) {
      await writeFile(inRoot(m[1]!), 'met\n');
      this.started.add(command);
      if (this.started.size >= this.meetCount) for (const wake of this.waiting.splice(0)) wake();
      else await new Promise<void>((resolve) => this.waiting.push(resolve));
      return { exitCode: 0 };
    }
    throw new Error(`the fake executor cannot run ${command}`);
  }
}

/** A base image of one layer holding /base.txt, "pulled" into the content store on demand. */
class FakeImages implements ImageSource {
  pulls = 0;
  private pulled: LayerRecord[] | undefined;

  constructor(private readonly store: ContentStore) {}

  async local(): Promise<LayerRecord[] | undefined> {
    return this.pulled;
  }

  async described(): Promise<LayerRecord[] | undefined> {
    return this.pulled;
  }

  async pull(ref: string): Promise<LayerRecord[]> {
    if (ref.split('@')[0] !== BASE) throw new Error(`no image ${ref}`);
    this.pulls++;
    const tar = await layerTar({ 'base.txt': 'from the base\n' });
    const { digest, size } = await this.store.putBytes(tar);
    this.pulled = [{ diffID: digest, digest, size, mediaType: MediaType.OciLayer }];
    return this.pulled;
  }
}

async function layerTar(files: Record<string, string>): Promise<Buffer> {
  const p = pack();
  for (const [name, content] of Object.entries(files)) p.entry({ name, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, content);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

let work: string;
let store: ContentStore;
let cache: CacheIndex;
let snapshotter: LocalSnapshotter;
let images: FakeImages;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'builder-solver-'));
  store = new ContentStore(join(work, 'state'));
  await store.init();
  cache = new CacheIndex(join(work, 'state'));
  await cache.init();
  snapshotter = await createSnapshotter(join(work, 'state'), 'native');
  images = new FakeImages(store);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function compileText(text: string): Promise<CompileResult> {
  return compile(parseDockerfile(text), {
    file: 'Dockerfile',
    buildArgs: {},
    platform: PLATFORM,
    dockerignore: [],
    defaultNetwork: 'none',
    resolveImage: async (ref) => ({
      ref: `${ref}@${sha256(ref)}`,
      config: { os: 'linux', architecture: 'amd64', config: {}, rootfs: { type: 'layers', diff_ids: [] } },
    }),
  });
}

/** Solves `text`'s target with a fresh Solver on the shared state; returns what a user would see. */
async function solve(text: string, executor = new FakeExecutor()) {
  const compiled = await compileText(text);
  const events: StepEvent[] = [];
  const solver = new Solver(compiled.definition, {
    store,
    cache,
    snapshotter,
    executor,
    images,
    localDirs: { context: work },
    statCache: StatCache.memory(),
    progress: (e: ProgressEvent) => void (e.type === 'step' && events.push(e)),
  });
  const outcome = await solver.solveFilesystem(compiled.root).then(
    (solved) => ({ solved, error: undefined }),
    (error: unknown) => ({ solved: undefined, error }),
  );
  const named = (status: StepEvent['status']) => events.filter((e) => e.status === status).map((e) => e.name);
  return { ...outcome, compiled, ran: executor.ran, started: named('started'), cached: named('cached'), failed: events.filter((e) => e.status === 'error') };
}

/** The file at `path` in the filesystem of `layers` (unpacked by the solver into committed snapshots). */
async function readIn(layers: LayerRecord[], path: string): Promise<string> {
  const { withMounts } = await import('../../src/snapshotter/index.js');
  const key = `test-view-${Math.random().toString(16).slice(2)}`;
  const mounts = await snapshotter.view(key, chainIDs(layers.map((l) => l.diffID)).at(-1));
  try {
    return await withMounts(mounts, (dir) => readFile(join(dir, path), 'utf8'));
  } finally {
    await snapshotter.remove(key);
  }
}

describe('Solver', () => {
  const dockerfile = `FROM ${BASE}\nRUN echo one > /one.txt\nRUN cat /one.txt > /copy.txt\n`;

  it('runs a cold build step by step on the snapshot of the step before, then answers it from the cache', async () => {
    const cold = await solve(dockerfile);
    expect(cold.error).toBeUndefined();
    expect(images.pulls).toBe(1);
    expect(cold.ran).toEqual(['echo one > /one.txt', 'cat /one.txt > /copy.txt']);
    expect(cold.solved!.layers).toHaveLength(3);
    expect(await readIn(cold.solved!.layers, 'copy.txt')).toBe('one\n');
    expect(await readIn(cold.solved!.layers, 'base.txt')).toBe('from the base\n');

    const warm = await solve(dockerfile);
    expect(warm.ran).toEqual([]);
    expect(images.pulls).toBe(1);
    expect(warm.cached).toEqual([expect.stringMatching(/^\[1\/3\] FROM example\.test\/base:1@sha256:/), '[2/3] RUN echo one > /one.txt', '[3/3] RUN cat /one.txt > /copy.txt']);
    expect(warm.solved!.layers).toEqual(cold.solved!.layers);
  });

  it('tells the executor that containers will run before it pulls a cold base and before each step that runs, and not when all is cached', async () => {
    const shared = images;
    images = new FakeImages(store);
    try {
      const text = `FROM ${BASE}\nRUN echo ahead > /ahead.txt\n`;
      const cold = new FakeExecutor();
      expect((await solve(text, cold)).error).toBeUndefined();
      expect(cold.told).toEqual([0, 1]);
      const warm = new FakeExecutor();
      expect((await solve(text, warm)).cached).toHaveLength(2);
      expect(warm.told).toEqual([]);
      // A build without RUN steps is told nothing, even when it pulls.
      images = new FakeImages(store);
      const copyOnly = new FakeExecutor();
      expect((await solve(`FROM ${BASE}\nENV A=1\n`, copyOnly)).error).toBeUndefined();
      expect(copyOnly.told).toEqual([]);
      expect(images.pulls).toBe(1);
    } finally {
      images = shared;
    }
  });

  it('misses from a changed step on, and hits the steps before it', async () => {
    const changed = await solve(`FROM ${BASE}\nRUN echo one > /one.txt\nRUN echo two > /one.txt\nRUN cat /one.txt > /copy.txt\n`);
    expect(changed.ran).toEqual(['echo two > /one.txt', 'cat /one.txt > /copy.txt']);
    expect(changed.cached).toContain('[2/4] RUN echo one > /one.txt');
    expect(await readIn(changed.solved!.layers, 'copy.txt')).toBe('two\n');
  });

  it('names the steps that added a layer, for the image history', async () => {
    const { solved, compiled } = await solve(`FROM ${BASE}\nENV A=1\nRUN echo one > /one.txt\n`);
    const history = compiled.image.history.filter((h) => h.vertex);
    expect(history.map((h) => h.created_by)).toEqual([expect.stringContaining('echo one > /one.txt')]);
    expect(solved!.addedLayer.has(history[0]!.vertex!)).toBe(true);
  });

  it('fails a step whose command fails: a StepError with the exit code and its last output, reported as the step', async () => {
    const { error, failed, ran } = await solve(`FROM ${BASE}\nRUN echo ok > /ok.txt\nRUN exit 3\nRUN echo never > /never.txt\n`);
    expect(error).toBeInstanceOf(StepError);
    const stepError = error as StepError;
    expect(stepError.reason).toBe('process did not complete successfully: exit code: 3');
    expect(stepError.meta.startLine).toBe(3);
    expect(stepError.outputTail).toEqual(['about to fail']);
    expect(failed).toEqual([expect.objectContaining({ name: '[3/4] RUN exit 3', error: 'process did not complete successfully: exit code: 3', line: 3 })]);
    expect(ran).not.toContain('echo never > /never.txt');
  });

  it('runs a copy once when two steps share its cache key (identical files from two stages); the other is a hit', async () => {
    const text = [
      `FROM ${BASE} AS a`, 'RUN echo shared > /shared.txt',
      `FROM ${BASE} AS b`, 'RUN echo other > /other.txt', 'RUN echo shared > /shared.txt',
      `FROM ${BASE} AS c`, 'COPY --from=a /shared.txt /got.txt',
      `FROM ${BASE} AS d`, 'COPY --from=b /shared.txt /got.txt',
      'FROM scratch', 'COPY --from=c /got.txt /c.txt', 'COPY --from=d /got.txt /d.txt', '',
    ].join('\n');
    const { started, cached, solved, error } = await solve(text);
    expect(error).toBeUndefined();
    const copies = (names: string[]) => names.filter((n) => / COPY --from=[ab] /.test(n));
    expect(copies(started)).toHaveLength(1);
    expect(copies(cached)).toHaveLength(1);
    expect(await readIn(solved!.layers, 'c.txt')).toBe('shared\n');
    expect(await readIn(solved!.layers, 'd.txt')).toBe('shared\n');
  });

  it.skipIf(availableParallelism() < 2)('runs independent stages at the same time', async () => {
    // Each `meet` returns only once both have started: run one after the other, they never would.
    const text = `FROM ${BASE} AS left\nRUN meet left\nFROM ${BASE} AS right\nRUN meet right\nFROM scratch\nCOPY --from=left /left /\nCOPY --from=right /right /\n`;
    const executor = new FakeExecutor(2);
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the stages ran one after the other')), 20_000).unref());
    const { ran, solved, error } = await Promise.race([solve(text, executor), timeout]);
    expect(error).toBeUndefined();
    expect(ran.sort()).toEqual(['meet left', 'meet right']);
    expect(await readIn(solved!.layers, 'left')).toBe('met\n');
    expect(await readIn(solved!.layers, 'right')).toBe('met\n');
  });
});

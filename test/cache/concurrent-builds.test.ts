// Many `builder build` processes started at once on one state directory, as CI jobs sharing a
// machine do: every build succeeds, their containers run at the same time, each image holds what
// its own build made, a step that two of them need runs once, and the store is left consistent.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extract } from 'tar-stream';
import { expect, it } from 'vitest';
import { events, leftoverContainers, mountsUnder, runBuilder } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';
import type { ImageIndex, ImageManifest } from '../../src/oci/types.js';
import type { StepEvent } from '../../src/progress.js';

const fx = useBuildFixture('concurrent');

const BUILDS = 8;
const ROUNDS = 3;

/** The files and their contents in an uncompressed layer tar. */
async function layerFiles(path: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const ex = extract();
  ex.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => void chunks.push(c as Buffer));
    stream.on('end', () => {
      if (header.type === 'file') files.set(header.name, Buffer.concat(chunks).toString());
      next();
    });
  });
  await pipeline(createReadStream(path), ex);
  return files;
}

it(`${BUILDS} builds at once on one state directory, ${ROUNDS} rounds: all succeed, side by side, each image its own`, async () => {
  const ctx = join(fx.work, 'ctx');
  const root = join(fx.work, 'root');
  await mkdir(ctx);
  // A build arg used by RUN: every build misses the cache and runs a container. The containers
  // share a cache mount, where each waits (up to 30 s) until another one has arrived too: a step
  // that finds nobody there fails, so the builds pass only if their containers run side by side.
  await writeFile(
    join(ctx, 'Dockerfile'),
    `FROM ${fx.base}\nARG N\nRUN --mount=type=cache,target=/meet,sharing=shared touch /meet/$N && ` +
      `i=0; while [ $(ls /meet | wc -l) -lt 2 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; ` +
      `[ $(ls /meet | wc -l) -ge 2 ] && echo "build $N" > /n\n`,
  );

  for (let round = 0; round < ROUNDS; round++) {
    const results = await Promise.all(
      Array.from({ length: BUILDS }, async (_, i) => {
        const n = round * BUILDS + i;
        const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', '--build-arg', `N=${n}`, '-t', `app:${n}`, ctx]);
        return { n, r };
      }),
    );
    for (const { n, r } of results) {
      expect(r.code, `build ${n}: ${r.stderr}`).toBe(0);
      const ran = events(r.stderr).some((e): e is StepEvent => e.type === 'step' && / RUN /.test(e.name) && e.status === 'done');
      expect(ran, `build ${n} ran its RUN step`).toBe(true);
    }
  }

  // Every blob is whole and named by its digest; no temporary file, lock or container is left.
  const blobs = join(root, 'blobs', 'sha256');
  for (const name of await readdir(blobs)) {
    const hash = createHash('sha256');
    await pipeline(createReadStream(join(blobs, name)), hash);
    expect(hash.digest('hex'), `blob ${name}`).toBe(name);
  }
  expect(await readdir(join(root, 'ingest'))).toEqual([]);
  expect((await readdir(root)).filter((n) => n.startsWith('lock') || n === 'dirty')).toEqual([]);
  expect(await readdir(join(root, 'users'))).toEqual([]);
  expect(await readdir(join(root, 'cache', 'running'))).toEqual([]);
  expect(leftoverContainers(root)).toEqual([]);
  expect(mountsUnder(root)).toEqual([]);

  // Each name points at an image whose top layer holds what its own build wrote.
  const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as ImageIndex;
  for (let n = 0; n < BUILDS * ROUNDS; n++) {
    const entry = index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === `docker.io/library/app:${n}`);
    expect(entry, `app:${n} in index.json`).toBeDefined();
    const manifest = JSON.parse(await readFile(join(blobs, entry!.digest.slice('sha256:'.length)), 'utf8')) as ImageManifest;
    const top = manifest.layers.at(-1)!;
    const files = await layerFiles(join(blobs, top.digest.slice('sha256:'.length)));
    expect(files.get('n'), `app:${n}`).toBe(`build ${n}\n`);
  }
}, 240_000);


it('a step that two builds start at once runs once: the second waits for its result, and both images share the layer', async () => {
  const ctx = join(fx.work, 'same-ctx');
  const root = join(fx.work, 'same-root');
  await mkdir(ctx);
  await writeFile(join(ctx, 'input.txt'), 'shared input\n');
  // The step counts its runs in a cache mount shared by both builds, and takes a while.
  await writeFile(
    join(ctx, 'Dockerfile'),
    `FROM ${fx.base}\nCOPY input.txt /\nRUN --mount=type=cache,target=/runs,sharing=shared echo run >> /runs/log && sleep 2 && cat /input.txt > /out\n`,
  );
  const build = (tag: string) => runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', '-t', tag, ctx]);
  const results = await Promise.all([build('one'), build('two')]);
  for (const r of results) expect(r.code, r.stderr).toBe(0);
  const runSteps = results.map((r) => events(r.stderr).filter((e): e is StepEvent => e.type === 'step' && / RUN /.test(e.name)));
  const ran = runSteps.filter((evs) => evs.some((e) => e.status === 'done'));
  const cached = runSteps.filter((evs) => evs.some((e) => e.status === 'cached'));
  expect([ran.length, cached.length]).toEqual([1, 1]);
  // The one that waited said why.
  const waiter = results[runSteps.indexOf(cached[0]!)]!;
  expect(events(waiter.stderr).some((e) => e.type === 'warning' && /RUN .*: the same step is running in another build \(PID \d+\); waiting for its result/.test(e.message))).toBe(true);

  // The step ran once (its log in the cache mount has one line), and both names point at images
  // with the same layers.
  const logs = (await readdir(join(root, 'cache-mounts'), { recursive: true })).filter((p) => p.endsWith('/log'));
  expect(logs).toHaveLength(1);
  expect(await readFile(join(root, 'cache-mounts', logs[0]!), 'utf8')).toBe('run\n');
  const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as ImageIndex;
  const layersOf = async (name: string) => {
    const entry = index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === `docker.io/library/${name}:latest`)!;
    const manifest = JSON.parse(await readFile(join(root, 'blobs', 'sha256', entry.digest.slice('sha256:'.length)), 'utf8')) as ImageManifest;
    return manifest.layers.map((l) => l.digest);
  };
  expect(await layersOf('one')).toEqual(await layersOf('two'));
}, 120_000);

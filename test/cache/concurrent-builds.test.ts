// Many `builder build` processes started at once on one state directory, as CI jobs sharing a
// machine do: every build succeeds, their containers never run at the same time, each image
// holds what its own build made, and the store is left consistent.

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

it(`${BUILDS} builds at once on one state directory, ${ROUNDS} rounds: all succeed, one at a time, each image its own`, async () => {
  const ctx = join(fx.work, 'ctx');
  const root = join(fx.work, 'root');
  await mkdir(ctx);
  // A build arg used by RUN: every build misses the cache and runs a container.
  await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nARG N\nRUN echo "build $N" > /n\n`);

  const runs: Array<{ n: number; start: number; end: number }> = [];
  let waited = 0;
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
      const evs = events(r.stderr);
      const run = evs.filter((e): e is StepEvent => e.type === 'step' && / RUN /.test(e.name));
      const start = run.find((e) => e.status === 'started')?.at;
      const end = run.find((e) => e.status === 'done')?.at;
      expect(start !== undefined && end !== undefined, `build ${n} ran its RUN step`).toBe(true);
      runs.push({ n, start: start!, end: end! });
      if (evs.some((e) => e.type === 'warning' && /^waiting for the state directory lock held by PID \d+/.test(e.message))) waited++;
    }
  }

  // Containers of two builds never ran at once in the one state directory.
  runs.sort((a, b) => a.start - b.start);
  for (let i = 1; i < runs.length; i++) expect(runs[i]!.start, `RUN of build ${runs[i]!.n} began before that of build ${runs[i - 1]!.n} ended`).toBeGreaterThanOrEqual(runs[i - 1]!.end);
  // Builds that queued behind others said whom they waited for.
  expect(waited).toBeGreaterThan(0);

  // Every blob is whole and named by its digest; no temporary file, lock or container is left.
  const blobs = join(root, 'blobs', 'sha256');
  for (const name of await readdir(blobs)) {
    const hash = createHash('sha256');
    await pipeline(createReadStream(join(blobs, name)), hash);
    expect(hash.digest('hex'), `blob ${name}`).toBe(name);
  }
  expect(await readdir(join(root, 'ingest'))).toEqual([]);
  expect((await readdir(root)).filter((n) => n.startsWith('lock'))).toEqual([]);
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

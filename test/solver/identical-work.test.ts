// Identical work started more than once in one build, on a cold cache each time: steps that
// differ but make the same layer on one parent, vertices that share a cache key, and one base
// image pulled under two names by parallel stages. Each build must succeed, do shared work once,
// and keep every name.

import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import type { ImageIndex } from '../../src/oci/types.js';
import type { ProgressEvent, StepEvent } from '../../src/progress.js';
import { pushBusyboxImage } from '../helpers/base-image.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { unpackOciArchive } from '../helpers/oci-tar.js';

const fx = useBuildFixture('identical');
const FILE = 'downloaded once, or twice\n';
let server: Server;
let url: string;

beforeAll(async () => {
  server = createServer((_req, res) => res.end(FILE));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
});

/** Builds `dockerfile` with a state directory of its own (a cold cache); returns the image's files and the progress. */
async function coldBuild(name: string, dockerfile: string): Promise<{ fs: string; root: string; events: ProgressEvent[] }> {
  const ctx = join(fx.work, name);
  await mkdir(ctx);
  await writeFile(join(ctx, 'Dockerfile'), dockerfile);
  const events: ProgressEvent[] = [];
  const dest = join(fx.work, `${name}.tar`);
  const root = join(ctx, '.state');
  await build({ context: ctx, root, network: 'none', outputs: [{ type: 'oci', dest }], tags: [`${name}:test`], onProgress: (e) => events.push(e) });
  return { fs: await unpackOciArchive(dest, fx.work, name), root, events };
}

/** How many steps whose name matches `pattern` ran, and how many were cache hits. */
function tally(events: ProgressEvent[], pattern: RegExp): { ran: number; cached: number } {
  const steps = events.filter((e): e is StepEvent => e.type === 'step' && pattern.test(e.name));
  return { ran: steps.filter((e) => e.status === 'started').length, cached: steps.filter((e) => e.status === 'cached').length };
}

const ROUNDS = 5;

it(`steps that differ but make the same layer on one base, in parallel stages: every build succeeds (${ROUNDS} cold builds)`, async () => {
  // Four ADDs of one URL that all write /f (mode 0600, owner 0:0) on the same base: four
  // vertices, four cache keys, one layer, committed under one snapshot name at the same moment.
  const dockerfile = [
    `FROM ${fx.base} AS a`,
    `ADD ${url}/f /`,
    `FROM ${fx.base} AS b`,
    `ADD ${url}/f /f`,
    `FROM ${fx.base} AS c`,
    `ADD --chown=0:0 ${url}/f /f`,
    `FROM ${fx.base} AS d`,
    `ADD --chmod=600 ${url}/f /f`,
    'FROM scratch',
    ...['a', 'b', 'c', 'd'].map((s) => `COPY --from=${s} /f /${s}`),
    '',
  ].join('\n');
  for (let round = 0; round < ROUNDS; round++) {
    const { fs } = await coldBuild(`same-layer-${round}`, dockerfile);
    for (const s of ['a', 'b', 'c', 'd']) expect(await readFile(join(fs, s), 'utf8'), `round ${round}: /${s}`).toBe(FILE);
  }
});

it('vertices that share a cache key run once, the others reuse their layers as cache hits', async () => {
  // With and without --checksum the download is two vertices with one content key, so the ADDs
  // after them share a cache key, and so do the RUNs on top. The RUN of stages c and d is one
  // vertex, solved once.
  const sum = `sha256:${createHash('sha256').update(FILE).digest('hex')}`;
  const dockerfile = [
    `FROM ${fx.base} AS a`,
    `ADD --checksum=${sum} ${url}/g /g`,
    'RUN cp /g /copy',
    `FROM ${fx.base} AS b`,
    `ADD ${url}/g /g`,
    'RUN cp /g /copy',
    `FROM ${fx.base} AS c`,
    'RUN echo same > /same',
    `FROM ${fx.base} AS d`,
    'RUN echo same > /same',
    'FROM scratch',
    'COPY --from=a /copy /a',
    'COPY --from=b /copy /b',
    'COPY --from=c /same /c',
    'COPY --from=d /same /d',
    '',
  ].join('\n');
  for (let round = 0; round < 2; round++) {
    const { fs, events } = await coldBuild(`shared-key-${round}`, dockerfile);
    expect(tally(events, /^\[[ab] 2\/3\] ADD /), `round ${round}: the ADDs`).toEqual({ ran: 1, cached: 1 });
    expect(tally(events, /^\[[ab] 3\/3\] RUN cp /), `round ${round}: the RUNs on them`).toEqual({ ran: 1, cached: 1 });
    expect(tally(events, /RUN echo same/), `round ${round}: the one RUN of two stages`).toEqual({ ran: 1, cached: 0 });
    for (const s of ['a', 'b']) expect(await readFile(join(fs, s), 'utf8')).toBe(FILE);
    for (const s of ['c', 'd']) expect(await readFile(join(fs, s), 'utf8')).toBe('same\n');
  }
});

it(`one base image under two names, pulled by parallel stages: both names are kept (${ROUNDS} cold builds)`, async () => {
  const second = await pushBusyboxImage(fx.registry.host, 'team/base', '1.0');
  const dockerfile = [`FROM ${fx.base} AS a`, 'RUN echo a > /a', `FROM ${second.ref} AS b`, 'RUN echo b > /b', 'FROM scratch', 'COPY --from=a /a /a', 'COPY --from=b /b /b', ''].join('\n');
  for (let round = 0; round < ROUNDS; round++) {
    const { root, fs } = await coldBuild(`two-names-${round}`, dockerfile);
    expect(await readFile(join(fs, 'b'), 'utf8')).toBe('b\n');
    const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as ImageIndex;
    const names = new Map(index.manifests.map((d) => [d.annotations?.['org.opencontainers.image.ref.name'], d.digest]));
    names.delete(`docker.io/library/two-names-${round}:test`);
    expect(names, `round ${round}`).toEqual(new Map([[fx.base, second.digest], [second.ref, second.digest]]));
  }
});

// Names in the local image store survive concurrent taggers: parallel tags in one process (two
// bases pulled by parallel stages, a pull and the final tag) and in several processes sharing the
// state directory. Each changes index.json by read-modify-write; none may lose another's name.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { ImageStore, type PlatformManifest } from '../../src/cache/image-store.js';
import { doctor } from '../../src/client/doctor.js';
import { MediaType, type ImageIndex } from '../../src/oci/types.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'builder-images-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A manifest descriptor whose digest is derived from `name`, so each name has its own. */
function manifestFor(name: string): PlatformManifest {
  return { mediaType: MediaType.OciManifest, digest: `sha256:${createHash('sha256').update(name).digest('hex')}`, size: name.length, platform: { os: 'linux', architecture: 'amd64' } };
}

/** Every name in index.json with its digest; fails on a name listed twice. */
async function names(): Promise<Map<string, string>> {
  const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as ImageIndex;
  const found = new Map<string, string>();
  for (const d of index.manifests) {
    const name = d.annotations?.['org.opencontainers.image.ref.name'] ?? '';
    expect(found.has(name), `${name} listed twice`).toBe(false);
    found.set(name, d.digest);
  }
  return found;
}

const PROCESSES = 4;
const TAGS_PER_PROCESS = 40;

it(`keeps every name of ${PROCESSES} processes and one process's parallel tags, each with its digest`, async () => {
  const store = new ImageStore(root);
  await store.init();
  await store.tag('example/kept:1', manifestFor('example/kept:1'));

  // The compiled module (tests run after `npm run build`), each process tagging its own names as
  // fast as it can, all started at once.
  const moduleUrl = new URL('../../dist/cache/image-store.js', import.meta.url).href;
  const script = `
    const { createHash } = await import('node:crypto');
    const { ImageStore } = await import(${JSON.stringify(moduleUrl)});
    const [root, prefix, count] = process.argv.slice(1);
    const store = new ImageStore(root);
    await store.init();
    for (let i = 0; i < Number(count); i++) {
      const name = prefix + i;
      await store.tag(name, { mediaType: '${MediaType.OciManifest}', digest: 'sha256:' + createHash('sha256').update(name).digest('hex'), size: name.length, platform: { os: 'linux', architecture: 'amd64' } });
    }`;
  const children = Array.from({ length: PROCESSES }, (_, p) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, root, `example/proc${p}:`, String(TAGS_PER_PROCESS)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  });
  // Meanwhile this process tags in parallel, from two store objects on the one directory.
  const other = new ImageStore(root);
  const local = Array.from({ length: TAGS_PER_PROCESS }, (_, i) => `example/local:${i}`);
  await Promise.all(local.map((name, i) => (i % 2 ? store : other).tag(name, manifestFor(name))));
  for (const r of await Promise.all(children)) expect(r.code, r.stderr).toBe(0);

  const expected = ['example/kept:1', ...local];
  for (let p = 0; p < PROCESSES; p++) for (let i = 0; i < TAGS_PER_PROCESS; i++) expected.push(`example/proc${p}:${i}`);
  const found = await names();
  for (const name of expected) expect(found.get(name), name).toBe(manifestFor(name).digest);
  expect(found.size).toBe(expected.length);
  // Nothing of the locking is left: no lock, no prepared lock, no temporary index.
  expect((await readdir(root)).sort()).toEqual(['index.json', 'oci-layout']);
});

it('re-tagging a name replaces its entry, and a later reader sees only the new digest', async () => {
  const store = new ImageStore(root);
  await store.init();
  await Promise.all([store.tag('example/base:1', manifestFor('old')), store.tag('example/other:1', manifestFor('other'))]);
  await Promise.all([store.tag('example/base:1', manifestFor('new')), store.tag('example/third:1', manifestFor('third'))]);
  expect(await names()).toEqual(
    new Map([
      ['example/other:1', manifestFor('other').digest],
      ['example/base:1', manifestFor('new').digest],
      ['example/third:1', manifestFor('third').digest],
    ]),
  );
  expect((await new ImageStore(root).get('example/base:1'))?.digest).toBe(manifestFor('new').digest);
});

it('takes over the index lock of a process that died holding it', async () => {
  const store = new ImageStore(root);
  await store.init();
  const dead = spawnSync('true').pid!;
  await mkdir(join(root, 'index.lock'));
  await writeFile(join(root, 'index.lock', `${dead}.1`), '');
  const { issues } = await doctor({ root });
  expect(issues).toContainEqual({ path: join(root, 'index.lock'), message: `image index lock of process ${dead}, which is gone`, leftover: true });
  await store.tag('example/after-crash:1', manifestFor('after'));
  expect((await store.get('example/after-crash:1'))?.digest).toBe(manifestFor('after').digest);
  expect(await readdir(root)).not.toContain('index.lock');
});

// Reading image archives in-process: Docker 20.10's `docker save` layout (configs named by
// digest, `<id>/layer.tar`, a layer shared between images as a symlink), written here by hand,
// and what our own writer makes, read back.

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import { writeImageArchive } from '../../src/exporter/archive.js';
import { readImageArchive } from '../../src/source/archive.js';
import { MediaType, type ImageManifest } from '../../src/oci/types.js';
import { makeTar, stream, tempDir } from '../snapshotter/helpers.js';

const hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

const layerTar = (name: string, content: string) => makeTar([{ name, content }]);

function config(diffIDs: string[], cmd: string): string {
  return JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: [cmd] }, rootfs: { type: 'layers', diff_ids: diffIDs.map((d) => `sha256:${d}`) } });
}

/** An archive of `files`, plus symlinks `links` (path → target). */
async function tarOf(files: Record<string, Buffer | string>, links: Record<string, string> = {}): Promise<Readable> {
  const entries = [
    ...Object.entries(files).map(([name, content]) => ({ name, content })),
    ...Object.entries(links).map(([name, linkname]) => ({ name, type: 'symlink' as const, linkname })),
  ];
  return stream(await makeTar(entries));
}

describe('readImageArchive', () => {
  let dir: { path: string; cleanup(): Promise<void> };
  let store: ContentStore;

  beforeEach(async () => {
    dir = await tempDir('builder-archive-');
    store = new ContentStore(join(dir.path, 'content'));
    await store.init();
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it("reads Docker 20.10's layout: digest-named configs, <id>/layer.tar, a shared layer as a symlink, RepoTags", async () => {
    const base = await layerTar('base.txt', 'base\n');
    const topTar = await layerTar('top.txt', 'top\n');
    const top = gzipSync(topTar); // docker load also takes compressed layers
    const topDiff = hex(topTar);
    const c1 = config([hex(base)], 'one');
    const c2 = config([hex(base), topDiff], 'two');
    const manifest = [
      { Config: `${hex(c1)}.json`, RepoTags: ['one:1'], Layers: ['aaa/layer.tar'] },
      { Config: `${hex(c2)}.json`, RepoTags: ['127.0.0.1:5000/team/two:2', 'two:latest'], Layers: ['bbb/layer.tar', 'ccc/layer.tar'] },
    ];
    const input = await tarOf(
      { 'aaa/layer.tar': base, 'aaa/json': '{}', 'aaa/VERSION': '1.0', 'ccc/layer.tar': top, [`${hex(c1)}.json`]: c1, [`${hex(c2)}.json`]: c2, 'manifest.json': JSON.stringify(manifest) },
      { 'bbb/layer.tar': '../aaa/layer.tar' },
    );
    const images = await readImageArchive(store, input, 'old.tar');
    expect(images.map((i) => i.names)).toEqual([['docker.io/library/one:1'], ['127.0.0.1:5000/team/two:2', 'docker.io/library/two:latest']]);
    expect(images.map((i) => i.configDigest)).toEqual([`sha256:${hex(c1)}`, `sha256:${hex(c2)}`]);
    const m = await store.readJson<ImageManifest>(images[1]!.manifestDescriptor.digest);
    expect(m.layers.map((l) => [l.mediaType, l.digest])).toEqual([
      [MediaType.OciLayer, `sha256:${hex(base)}`],
      [MediaType.OciLayerGzip, `sha256:${hex(top)}`],
    ]);
    expect(images[1]!.manifestDescriptor.platform).toEqual({ os: 'linux', architecture: 'amd64' });
  });

  it('refuses a config whose name is not its digest, and a layer that does not unpack to its diff_id', async () => {
    const base = await layerTar('base.txt', 'base\n');
    const c1 = config([hex(base)], 'one');
    const renamed = await tarOf({ 'l/layer.tar': base, [`${'0'.repeat(64)}.json`]: c1, 'manifest.json': JSON.stringify([{ Config: `${'0'.repeat(64)}.json`, Layers: ['l/layer.tar'] }]) });
    await expect(readImageArchive(store, renamed, 'renamed.tar')).rejects.toThrow(/^renamed\.tar: 0{64}\.json: content digest sha256:[0-9a-f]{64} does not match its name$/);
    const other = await layerTar('other.txt', 'other\n');
    const swapped = await tarOf({ 'l/layer.tar': other, [`${hex(c1)}.json`]: c1, 'manifest.json': JSON.stringify([{ Config: `${hex(c1)}.json`, Layers: ['l/layer.tar'] }]) });
    await expect(readImageArchive(store, swapped, 'swapped.tar')).rejects.toThrow(/^swapped\.tar: l\/layer\.tar: uncompressed digest .* does not match diff_id/);
    const none = await tarOf({ 'hello.txt': 'hi' });
    await expect(readImageArchive(store, none, 'none.tar')).rejects.toThrow('none.tar: not an image archive');
    await expect(readImageArchive(store, stream(Buffer.from('not a tar\n')), 'notes.txt')).rejects.toThrow(/^notes\.txt: not a readable image archive: /);
  });

  it('reads back what writeImageArchive writes, by manifest.json and, without it, by index.json', async () => {
    const layer = await store.putBytes(await layerTar('a.txt', 'a\n'));
    const cfg = await store.putBytes(config([layer.digest.slice(7)], 'a'));
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, ...cfg },
      layers: [{ mediaType: MediaType.OciLayer, ...layer }],
    };
    const desc = { mediaType: MediaType.OciManifest, ...(await store.putBytes(JSON.stringify(manifest))) };
    for (const format of ['docker', 'oci'] as const) {
      const out = new PassThrough();
      const chunks: Buffer[] = [];
      out.on('data', (c: Buffer) => chunks.push(c));
      await writeImageArchive(store, [{ manifestDescriptor: desc, manifest, names: ['docker.io/library/a:1'] }], out, format);
      const other = new ContentStore(join(dir.path, `other-${format}`));
      await other.init();
      const [image] = await readImageArchive(other, Readable.from([Buffer.concat(chunks)]), format);
      expect(image!.names).toEqual(['docker.io/library/a:1']);
      expect(image!.configDigest).toBe(cfg.digest);
      expect(await other.has(layer.digest)).toBe(true);
    }
  });
});

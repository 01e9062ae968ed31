// The remote cache's format: records → BuildKit's cache config → records, and configs written the
// way BuildKit writes them (Go omits a zero parent index; older versions put the uncompressed
// digest only on the index's descriptors).

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import { BlobSources } from '../../src/registry/blob-sources.js';
import { CacheImports } from '../../src/source/cache-import.js';
import type { LayerRecord } from '../../src/cache/cache-index.js';
import { decodeCacheConfig, encodeCacheConfig, type CacheConfig } from '../../src/cache/remote-cache.js';
import type { Digest } from '../../src/oci/types.js';

const d = (c: string) => `sha256:${c.repeat(64)}` as Digest;
const layer = (c: string, size = 10): LayerRecord => ({ digest: d(c), diffID: d(c.toUpperCase() === c ? c : String.fromCharCode(c.charCodeAt(0) + 1)), size, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });

describe('remote cache config', () => {
  it('writes each shared chain once and reads every record back', () => {
    const base = layer('a');
    const records = [
      { key: d('1'), layers: [base] },
      { key: d('2'), layers: [base, layer('c')] },
      { key: d('3'), layers: [base, layer('c')] },
      { key: d('4'), layers: [layer('e')] },
    ];
    const config = encodeCacheConfig(records, '1970-01-01T00:00:00Z');
    expect(config.layers).toHaveLength(3);
    expect(config.records.map((r) => r.digest)).toEqual([d('1'), d('2'), d('3'), d('4')]);
    const back = decodeCacheConfig(config, () => undefined);
    // Layers without a time of their own get the export's.
    for (const r of records) expect(back.get(r.key)).toEqual(r.layers.map((l) => ({ ...l, createdAt: '1970-01-01T00:00:00Z' })));
  });

  it('keeps the time each layer was made (the image history of a build from the cache takes it)', () => {
    const made = { ...layer('a'), createdAt: '2026-01-02T03:04:05.000Z' };
    const config = encodeCacheConfig([{ key: d('1'), layers: [made] }], '2027-01-01T00:00:00Z');
    expect(decodeCacheConfig(config, () => undefined).get(d('1'))).toEqual([made]);
    // An inline cache: no layer annotations, the record's time.
    const inline: CacheConfig = { layers: [{ blob: d('a'), parent: -1 }], records: [{ digest: d('2'), layers: [{ layer: 0, createdAt: '2026-05-05T00:00:00Z' }] }] };
    expect(decodeCacheConfig(inline, () => layer('a')).get(d('2'))?.[0]?.createdAt).toBe('2026-05-05T00:00:00Z');
  });

  it('leaves out a step without layers', () => {
    expect(encodeCacheConfig([{ key: d('1'), layers: [] }], '').records).toEqual([]);
  });

  it('reads a BuildKit config: an absent parent is index 0, layer facts from the index descriptors', () => {
    const config: CacheConfig = {
      layers: [{ blob: d('a'), parent: -1 }, { blob: d('c') }],
      records: [{ digest: d('9'), layers: [{ layer: 1 }], inputs: [[{ selector: '', link: 0 }]] }, { digest: d('8') }],
    };
    const facts: Record<string, Partial<LayerRecord>> = {
      [d('a')]: { diffID: d('b'), size: 5, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' },
      [d('c')]: { diffID: d('d'), size: 7, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' },
    };
    const records = decodeCacheConfig(config, (blob) => facts[blob]);
    expect(records.get(d('9'))?.map((l) => [l.digest, l.diffID, l.size])).toEqual([
      [d('a'), d('b'), 5],
      [d('c'), d('d'), 7],
    ]);
    // A record without results (BuildKit's links between keys) has nothing to reuse.
    expect(records.has(d('8'))).toBe(false);
  });

  it('drops records whose chain is broken, undescribed or loops', () => {
    const config: CacheConfig = {
      layers: [
        { blob: d('a'), parent: 5 },
        { blob: d('c'), parent: -1 },
        { blob: d('e'), parent: 3 },
        { blob: d('f'), parent: 2 },
      ],
      records: [
        { digest: d('1'), layers: [{ layer: 0 }] },
        { digest: d('2'), layers: [{ layer: 1 }] },
        { digest: d('3'), layers: [{ layer: 2 }] },
      ],
    };
    const records = decodeCacheConfig(config, (blob) => (blob === d('c') ? undefined : { diffID: d('0'), size: 1, mediaType: 'x' }));
    expect([...records.keys()]).toEqual([]);
  });
});

describe('--cache-from type=local', () => {
  it('reads blobs only below the cache directory: a digest that would lead out of it is refused', async () => {
    const work = await mkdtemp(join(tmpdir(), 'builder-cache-escape-'));
    try {
      const dir = join(work, 'cache');
      await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
      // An outside file the hostile index points at, by a "digest" that walks up out of blobs/.
      await writeFile(join(work, 'outside'), '{"manifests":[]}');
      const escape = 'sha256:../../../outside';
      await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: escape, size: 16 }] }));
      const store = new ContentStore(join(work, 'state'));
      await store.init();
      const warnings: string[] = [];
      const read = CacheImports.read(store, [{ type: 'local', src: dir }], {
        registry: () => Promise.reject(new Error('no registry here')),
        blobSources: new BlobSources(join(work, 'state')),
        platform: { os: 'linux', architecture: 'amd64' },
        emit: (e) => {
          if (e.type === 'warning') warnings.push(e.message);
        },
      });
      await expect(read).rejects.toThrow(`${JSON.stringify(escape)} is not a sha256 digest`);
      expect(warnings).toEqual([]);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

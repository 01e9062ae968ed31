// The remote cache's format: records → BuildKit's cache config → records, and configs written the
// way BuildKit writes them (Go omits a zero parent index; older versions put the uncompressed
// digest only on the index's descriptors).

import { describe, expect, it } from 'vitest';
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
    for (const r of records) expect(back.get(r.key)).toEqual(r.layers);
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

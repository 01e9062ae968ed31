// Layers leave the machine compressed: parallel gzip members whose bytes do not depend on the
// machine, and zstd, each applying back to the diffID of the stored tar.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import { compressBlob, parallelGzip } from '../../src/exporter/compress.js';
import { MediaType } from '../../src/oci/types.js';
import { applyLayer, createSnapshotter, withMounts, writeLayer, type LocalSnapshotter } from '../../src/snapshotter/index.js';
import { tempDir } from '../snapshotter/helpers.js';

const EPOCH = 1_600_000_000;

describe('layer compression at export', () => {
  let dir: { path: string; cleanup(): Promise<void> };
  let sn: LocalSnapshotter;
  let store: ContentStore;

  beforeEach(async () => {
    dir = await tempDir('builder-compress-');
    sn = await createSnapshotter(join(dir.path, 'root'), 'overlayfs');
    store = new ContentStore(join(dir.path, 'content'));
    await store.init();
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it('gzips in independent members whose bytes do not depend on the parallelism', async () => {
    const input = Buffer.concat(Array.from({ length: 40 }, (_, i) => Buffer.from(`line ${i} ${'x'.repeat(i * 7)}\n`.repeat(50))));
    const run = async (inFlight: number, chunk: number): Promise<Buffer> => {
      const parts: Buffer[] = [];
      async function* src(): AsyncGenerator<Buffer> {
        for (let o = 0; o < input.length; o += chunk) yield input.subarray(o, o + chunk);
      }
      for await (const b of parallelGzip(src(), { blockSize: 4096, inFlight })) parts.push(b);
      return Buffer.concat(parts);
    };
    const one = await run(1, 1000);
    expect((await run(4, 777)).equals(one)).toBe(true);
    expect(gunzipSync(one).equals(input)).toBe(true);
    // Several members: each starts with the gzip magic.
    expect(Math.ceil(input.length / 4096)).toBeGreaterThan(10);
    // Empty input still makes a valid (empty) gzip stream.
    const empty: Buffer[] = [];
    for await (const b of parallelGzip((async function* () {})())) empty.push(b);
    expect(gunzipSync(Buffer.concat(empty)).length).toBe(0);
  });

  it('compresses a multi-block layer to gzip and zstd that apply back to the same diffID', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 123);
    for (let i = 0; i + 4 <= big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    await withMounts(await sn.prepare('w'), async (d) => {
      await writeFile(join(d, 'big.bin'), big);
      await writeFile(join(d, 'small.txt'), 'small');
    });
    const raw = await writeLayer(await sn.layout('w'), store, { sourceDateEpoch: EPOCH });
    expect(raw.digest).toBe(raw.diffID);
    expect(raw.size).toBe(await store.size(raw.digest));
    const gz = await compressBlob(store, raw.digest, 'gzip');
    const zst = await compressBlob(store, raw.digest, 'zstd');
    // Buffer.equals: vitest's toEqual compares large buffers element by element (seconds per MiB).
    expect(gunzipSync(await store.readBytes(gz.digest)).equals(await store.readBytes(raw.digest))).toBe(true);
    expect((await compressBlob(store, raw.digest, 'gzip')).digest).toBe(gz.digest);
    for (const [layer, mediaType] of [[raw, MediaType.OciLayer], [gz, MediaType.OciLayerGzip], [zst, MediaType.OciLayerZstd]] as const) {
      const key = `apply-${mediaType}`;
      await sn.prepare(key);
      const { diffID } = await applyLayer(await sn.layout(key), store.read(layer.digest), mediaType);
      expect(diffID).toBe(raw.diffID);
      expect((await readFile(join((await sn.layout(key)).dir, 'big.bin'))).equals(big)).toBe(true);
    }
  });
});

// Files with holes stay sparse through a step's snapshot, the stored layer tar, a child snapshot
// (the native driver copies the parent's tree) and unpacking the layer again: a mostly empty
// file costs its data, not its size, at every stage, while its bytes and the layer digest are
// exactly those of the dense file.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import { MediaType } from '../../src/oci/types.js';
import { applyLayer, createSnapshotter, withMounts, writeLayer, type LocalSnapshotter } from '../../src/snapshotter/index.js';
import { tempDir } from './helpers.js';

const kinds = ['overlayfs', 'native'] as const;
const SIZE = 32 * 1024 * 1024;
const MiB = 1024 * 1024;

/** 3 MiB of random bytes with zero runs at odd offsets, across 64 KiB and 1 MiB boundaries. */
function mixedContent(): Buffer {
  const buf = randomBytes(3 * MiB);
  for (const [start, end] of [[5_000, 300_001], [MiB - 6, 2 * MiB + 10], [3 * MiB - 4_097, 3 * MiB]] as const) buf.fill(0, start, end);
  return buf;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function allocated(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

describe.each(kinds)('holes (%s)', (kind) => {
  let dir: { path: string; cleanup(): Promise<void> };
  let sn: LocalSnapshotter;
  let store: ContentStore;

  beforeEach(async () => {
    dir = await tempDir(`builder-sparse-${kind}-`);
    sn = await createSnapshotter(join(dir.path, 'root'), kind);
    store = new ContentStore(join(dir.path, 'content'));
    await store.init();
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it('keeps holes in the step, the stored layer, a child snapshot and an unpacked copy', async () => {
    const mixed = mixedContent();
    await withMounts(await sn.prepare('step'), async (root) => {
      // What `truncate -s 32M` and `dd seek=` leave: data at both ends, a hole between.
      const fh = await open(join(root, 'big'), 'w');
      await fh.write('start', 0);
      await fh.truncate(SIZE - 3);
      await fh.write('end', SIZE - 3);
      await fh.close();
      await writeFile(join(root, 'mixed'), mixed);
    });

    const layer = await writeLayer(await sn.layout('step'), store, {});
    const blob = store.path(layer.digest);
    expect((await stat(blob)).size).toBe(layer.size);
    expect(layer.size).toBeGreaterThan(SIZE);
    // The stored tar's bytes are unchanged (its digest is the sha256 of what reads back) ...
    expect(`sha256:${await sha256File(blob)}`).toBe(layer.digest);
    // ... but the zeros of `big` are not on disk.
    expect(await allocated(blob)).toBeLessThan(mixed.length + MiB);
    await sn.commit('L1', 'step');

    // A step on top: the native driver copies the parent's whole tree into the new snapshot.
    await withMounts(await sn.prepare('child', 'L1'), async (root) => {
      expect((await stat(join(root, 'big'))).size).toBe(SIZE);
      expect(await allocated(join(root, 'big'))).toBeLessThan(MiB);
      expect((await readFile(join(root, 'mixed'))).equals(mixed)).toBe(true);
    });
    expect((await sn.usage('child')).size).toBeLessThan(mixed.length + MiB);

    // Unpacking the stored layer (as for a pulled base image) keeps the holes too.
    await sn.prepare('unpacked');
    const { diffID } = await applyLayer(await sn.layout('unpacked'), store.read(layer.digest), MediaType.OciLayer);
    expect(diffID).toBe(layer.diffID);
    expect((await sn.usage('unpacked')).size).toBeLessThan(mixed.length + MiB);
    const fs = (await sn.layout('unpacked')).dir;
    const big = await readFile(join(fs, 'big'));
    expect(big.length).toBe(SIZE);
    expect(big.subarray(0, 5).toString()).toBe('start');
    expect(big.subarray(SIZE - 3).toString()).toBe('end');
    expect(big.subarray(5, SIZE - 3).equals(Buffer.alloc(SIZE - 8))).toBe(true);
    expect((await readFile(join(fs, 'mixed'))).equals(mixed)).toBe(true);
  });
});

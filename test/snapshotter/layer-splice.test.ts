// A layer written with an earlier layer at hand takes the content of the files named unchanged
// from the earlier blob, and only where the blob holds the very header the new layer gets: a
// missing, truncated or mis-indexed blob, or a file whose metadata changed, is read from disk,
// and the layer is then the one a plain write gives. On overlayfs the walk also takes those
// files' lstats from the caller and does not read their xattrs: a file whose earlier header
// carried other xattrs is read again in full.

import { lstatSync, type Stats } from 'node:fs';
import { chmod, link, mkdir, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setAttribute } from 'fs-xattr';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import type { Digest } from '../../src/oci/types.js';
import { createSnapshotter, writeLayer, type EarlierLayer, type LayerIndex, type SnapshotLayout } from '../../src/snapshotter/index.js';
import { tempDir } from './helpers.js';

const EPOCH = 1_600_000_000;
const LONG = `${'long-name-'.repeat(12)}.txt`;

describe.each(['native', 'overlayfs'] as const)('writeLayer with an earlier layer (%s)', (kind) => {
  let dir: { path: string; cleanup(): Promise<void> };
  let layout: SnapshotLayout;
  let tree: string;
  let store: ContentStore;
  let first: { diffID: Digest; index: LayerIndex };

  beforeEach(async () => {
    dir = await tempDir('builder-splice-');
    const sn = await createSnapshotter(join(dir.path, 'root'), kind);
    store = new ContentStore(join(dir.path, 'content'));
    await store.init();
    await sn.prepare('w');
    layout = await sn.layout('w');
    tree = layout.dir;
    await mkdir(join(tree, 'src', 'deep'), { recursive: true });
    for (let i = 0; i < 40; i++) await writeFile(join(tree, 'src', `f${i}.js`), `export const v${i} = ${i};\n`.repeat(i * 7 + 1));
    await writeFile(join(tree, 'src', 'deep', LONG), 'a name only PAX can hold\n');
    await writeFile(join(tree, 'big.bin'), Buffer.alloc(3 * 1024 * 1024 + 100, 'x')); // larger than the read window
    await writeFile(join(tree, 'empty'), '');
    await writeFile(join(tree, 'pair-a'), 'linked twice\n');
    await link(join(tree, 'pair-a'), join(tree, 'pair-b'));
    await writeFile(join(tree, 'tagged'), 'with an xattr\n');
    await setAttribute(join(tree, 'tagged'), 'user.note', 'kept');
    const layer = await writeLayer(layout, store, { sourceDateEpoch: EPOCH, index: true });
    first = { diffID: layer.diffID, index: layer.index! };
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  /** Every indexed file, with its lstat now. */
  const everything = (): Map<string, Stats> => new Map([...first.index.keys()].map((k) => [k, lstatSync(join(tree, k))]));
  const earlier = (over: Partial<EarlierLayer> = {}): EarlierLayer => ({ digest: first.diffID, index: first.index, same: everything(), ...over });
  const write = (e?: EarlierLayer) => writeLayer(layout, store, { sourceDateEpoch: EPOCH, earlier: e, index: true });

  /** Rewrites `rel` with other bytes of the same size and mtime: only its content tells it apart. */
  async function sameSizeEdit(rel: string): Promise<void> {
    const path = join(tree, rel);
    const st = await stat(path);
    await writeFile(path, Buffer.alloc(st.size, 'Z'));
    await utimes(path, st.atime, st.mtime);
  }

  it('indexes every file with content, and re-packs byte for byte from the earlier blob', async () => {
    expect([...first.index.keys()].sort()).toEqual(['big.bin', 'pair-a', `src/deep/${LONG}`, ...Array.from({ length: 40 }, (_, i) => `src/f${i}.js`), 'tagged'].sort());
    const again = await write(earlier());
    expect(again.diffID).toBe(first.diffID);
    expect(again.index).toEqual(first.index);
  });

  it('takes the content of the files named unchanged from the earlier blob, and reads the others', async () => {
    await sameSizeEdit('src/f3.js');
    await sameSizeEdit('big.bin');
    const plain = await write();
    expect(plain.diffID).not.toBe(first.diffID);
    // Named unchanged: the earlier bytes (this is how the reads are saved, so the caller must be right).
    expect((await write(earlier())).diffID).toBe(first.diffID);
    // Not named: read from disk.
    const same = everything();
    same.delete('src/f3.js');
    same.delete('big.bin');
    expect((await write(earlier({ same }))).diffID).toBe(plain.diffID);
  });

  it('reads a file from disk when its header differs from the earlier one', async () => {
    await sameSizeEdit('src/f5.js');
    await chmod(join(tree, 'src', 'f5.js'), 0o600);
    const plain = await write();
    expect((await write(earlier())).diffID).toBe(plain.diffID);
  });

  it('falls back to the files when the earlier blob is missing, truncated or wrongly indexed', async () => {
    await sameSizeEdit('src/f9.js');
    await sameSizeEdit(`src/deep/${LONG}`);
    const plain = (await write()).diffID;
    const shifted = new Map([...first.index].map(([k, [at, header, size]]) => [k, [at + 512, header, size] as const]));
    const garbage = new Map<string, never>([...first.index.keys()].map((k) => [k, ({ f: 'x' } as never)]));
    const negative = new Map([...first.index].map(([k, [, header, size]]) => [k, [-1, header, size] as const]));
    expect((await write(earlier({ index: shifted }))).diffID).toBe(plain);
    expect((await write(earlier({ index: garbage }))).diffID).toBe(plain);
    expect((await write(earlier({ index: negative }))).diffID).toBe(plain);
    expect((await write(earlier({ digest: `sha256:${'0'.repeat(64)}` }))).diffID).toBe(plain);
  });

  it('packs a file named unchanged with its xattrs as they are now when they differ from the earlier header', async () => {
    await setAttribute(join(tree, 'tagged'), 'user.note', 'changed');
    await setAttribute(join(tree, 'src', 'f7.js'), 'user.added', 'new');
    const plain = await write();
    expect(plain.diffID).not.toBe(first.diffID);
    const same = everything();
    // A file with xattrs now and none before is no longer the earlier layer's file: not named.
    same.delete('src/f7.js');
    expect((await write(earlier({ same }))).diffID).toBe(plain.diffID);
  });

  it('reads the files past the end of an earlier blob cut short', async () => {
    const blob = store.path(first.diffID);
    await truncate(blob, Math.floor((await stat(blob)).size / 2));
    expect((await write(earlier())).diffID).toBe(first.diffID);
  });
});

import { link, mkdir, readFile, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getAttribute, setAttribute } from 'fs-xattr';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import { MediaType } from '../../src/oci/types.js';
import { applyLayer, createSnapshotter, withMounts, writeLayer, type LocalSnapshotter } from '../../src/snapshotter/index.js';
import { makeLayer, readLayer, stream, tempDir, type TestEntry } from './helpers.js';

const kinds = ['overlayfs', 'native'] as const;
const EPOCH = 1_600_000_000;

const base: TestEntry[] = [
  { name: 'a.txt', content: 'A' },
  { name: 'mod.txt', content: 'old' },
  { name: 'del.txt', content: 'bye' },
  { name: 'touched.txt', content: 'same' },
  { name: 'rep/', type: 'directory' },
  { name: 'rep/old', content: 'old' },
  { name: 'same/', type: 'directory' },
  { name: 'same/s', content: 's' },
];

describe.each(kinds)('writeLayer (%s)', (kind) => {
  let dir: { path: string; cleanup(): Promise<void> };
  let sn: LocalSnapshotter;
  let store: ContentStore;

  beforeEach(async () => {
    dir = await tempDir(`builder-diff-${kind}-`);
    sn = await createSnapshotter(join(dir.path, 'root'), kind);
    store = new ContentStore(join(dir.path, 'content'));
    await store.init();
    await sn.prepare('base');
    await applyLayer(await sn.layout('base'), stream(await makeLayer(base)), MediaType.OciLayerGzip);
    await sn.commit('L1', 'base');
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  /** The same "RUN" every time: add, modify, delete, replace a dir, touch without changing. */
  async function change(key: string): Promise<void> {
    await withMounts(await sn.prepare(key, 'L1'), async (d) => {
      await writeFile(join(d, 'new.txt'), 'new');
      await writeFile(join(d, 'mod.txt'), 'new content');
      await rm(join(d, 'del.txt'));
      await rm(join(d, 'rep'), { recursive: true });
      await mkdir(join(d, 'rep'));
      await writeFile(join(d, 'rep', 'fresh'), 'fresh');
      if (kind === 'native') await utimes(join(d, 'touched.txt'), new Date(), new Date());
    });
  }

  it('emits additions, modifications, whiteouts and replaced dirs', async () => {
    await change('w');
    const layer = await writeLayer(await sn.layout('w'), store, { sourceDateEpoch: EPOCH });
    // Stored uncompressed: the blob is the tar the diffID names.
    expect(layer.mediaType).toBe(MediaType.OciLayer);
    expect(layer.digest).toBe(layer.diffID);
    expect(layer.empty).toBe(false);
    expect(await store.has(layer.digest)).toBe(true);
    expect(await store.size(layer.digest)).toBe(layer.size);

    const entries = await readLayer(store, layer.digest);
    const names = entries.map((e) => e.name);
    // overlay records `rm -rf rep && mkdir rep` as an opaque dir; the tree comparison as a
    // whiteout of what disappeared. Both mean the same thing to a reader.
    expect(names).toEqual(
      kind === 'overlayfs'
        ? ['.wh.del.txt', 'mod.txt', 'new.txt', 'rep/', 'rep/.wh..wh..opq', 'rep/fresh']
        : ['.wh.del.txt', 'mod.txt', 'new.txt', 'rep/', 'rep/.wh.old', 'rep/fresh'],
    );
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get('mod.txt')).toMatchObject({ type: 'file', content: 'new content', mode: 0o644, uid: 0, gid: 0, uname: '', gname: '' });
    expect(byName.get('.wh.del.txt')).toMatchObject({ type: 'file', size: 0, mtime: EPOCH });
    expect(byName.get('rep/')).toMatchObject({ type: 'directory' });
    for (const e of entries) expect(e.mtime).toBeLessThanOrEqual(EPOCH);
    expect(byName.get('new.txt')!.mtime).toBe(EPOCH);
  });

  it('counts an overlay snapshot\'s disk use on its walk (the store then knows it without walking again)', async () => {
    await change('w');
    const layer = await writeLayer(await sn.layout('w'), store, { sourceDateEpoch: EPOCH });
    if (kind !== 'overlayfs') {
      expect(layer.usage).toBeUndefined(); // a native tree is more than its diff
      return;
    }
    // Whiteouts included (the kernel's shared whiteout inode counts once).
    expect(layer.usage).toEqual(await sn.usage('w'));
    await sn.commit('L2', 'w', { usage: layer.usage! });
    expect((await sn.stat('L2'))?.usage).toEqual(await sn.usage('L2'));
  });

  it('is deterministic', async () => {
    await change('w1');
    const first = await writeLayer(await sn.layout('w1'), store, { sourceDateEpoch: EPOCH });
    const again = await writeLayer(await sn.layout('w1'), store, { sourceDateEpoch: EPOCH });
    await change('w2');
    const second = await writeLayer(await sn.layout('w2'), store, { sourceDateEpoch: EPOCH });
    expect(again).toEqual(first);
    expect(second).toEqual(first);
  });

  it('reports an empty diff and stores it as the empty tar (BuildKit keeps such layers)', async () => {
    await sn.prepare('nothing', 'L1');
    const layer = await writeLayer(await sn.layout('nothing'), store);
    expect(layer.empty).toBe(true);
    // Two zero blocks: the empty tar every tool gives the same digest.
    expect(layer.size).toBe(1024);
    expect(layer.digest).toBe('sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef');
    expect(await store.has(layer.digest)).toBe(true);
  });

  it('writes hardlinks, symlinks, long names and xattrs, and round-trips through applyLayer', async () => {
    const long = `deep/${'x'.repeat(120)}/${'y'.repeat(40)}.txt`;
    await withMounts(await sn.prepare('w', 'L1'), async (d) => {
      await mkdir(join(d, 'deep', 'x'.repeat(120)), { recursive: true });
      await writeFile(join(d, long), 'long');
      await writeFile(join(d, 'h1'), 'linked');
      await link(join(d, 'h1'), join(d, 'h2'));
      await writeFile(join(d, 'caps'), 'x');
      await setAttribute(join(d, 'caps'), 'user.note', Buffer.from([1, 2, 3, 0, 255]));
      await symlink('a.txt', join(d, 'sym'));
    });
    const layer = await writeLayer(await sn.layout('w'), store, { sourceDateEpoch: EPOCH });
    const entries = await readLayer(store, layer.digest);
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get(long)).toMatchObject({ type: 'file', content: 'long' });
    expect(byName.get('h1')).toMatchObject({ type: 'file', content: 'linked' });
    expect(byName.get('h2')).toMatchObject({ type: 'link', linkname: 'h1', size: 0 });
    expect(byName.get('sym')).toMatchObject({ type: 'symlink', linkname: 'a.txt' });
    expect(byName.get('caps')!.pax).toHaveProperty(['SCHILY.xattr.user.note']);
    expect(entries.map((e) => e.name)).toEqual([...entries.map((e) => e.name)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));

    await sn.commit('L2', 'w');
    await sn.prepare('copy', 'L1');
    const { diffID } = await applyLayer(await sn.layout('copy'), store.read(layer.digest), layer.mediaType);
    expect(diffID).toBe(layer.diffID);
    await sn.commit('L2b', 'copy');
    await withMounts(await sn.view('v', 'L2b'), async (d) => {
      expect(await readFile(join(d, long), 'utf8')).toBe('long');
      // Binary xattr values (think security.capability) survive the trip.
      expect(await getAttribute(join(d, 'caps'), 'user.note')).toEqual(Buffer.from([1, 2, 3, 0, 255]));
      expect((await readdir(d)).sort()).toEqual(['a.txt', 'caps', 'del.txt', 'h1', 'h2', 'deep', 'mod.txt', 'rep', 'same', 'sym', 'touched.txt'].sort());
    });
    // Diffing the re-applied layer gives the same bytes again.
    if (kind === 'overlayfs') {
      await sn.remove('v');
      const key = 'again';
      await sn.prepare(key, 'L1');
      await applyLayer(await sn.layout(key), store.read(layer.digest), layer.mediaType);
      const re = await writeLayer(await sn.layout(key), store, { sourceDateEpoch: EPOCH });
      expect(await readLayer(store, re.digest)).toEqual(entries);
      expect(re.digest).toBe(layer.digest);
    }
  });
});

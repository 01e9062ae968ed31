// `--output type=local,dest=DIR` and `type=tar,dest=FILE`: the image's final filesystem, its
// layers applied in order (whiteouts removing what they name) as a container would see it.
//
// As BuildKit's exporters (checked against Docker 20.10's): the directory's files belong to the
// user who runs builder (BuildKit's client writes them as itself), while the tar keeps the
// image's owners. Both are made beside their destination and moved into place when complete.

import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lchown, lstat, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ContentStore } from '../cache/content-store.js';
import type { Descriptor, Digest } from '../oci/types.js';
import { applyLayer, writeLayer, type SnapshotLayout } from '../snapshotter/index.js';
import { writeOutputFile } from './archive.js';

/** The layers of an image, in order, with the diff_ids its config promises. */
export interface ImageLayers {
  layers: readonly Descriptor[];
  diffIDs: readonly Digest[];
}

/** Writes the image's filesystem into `dest` (`signal` stops it between layers), a new or existing directory (entries of the same name are replaced). */
export async function writeLocalDirectory(store: ContentStore, image: ImageLayers, dest: string, signal?: AbortSignal): Promise<void> {
  dest = resolve(dest);
  const work = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const tree = await unpack(store, image, work, signal);
    await ownAll(tree, process.getuid?.() ?? 0, process.getgid?.() ?? 0);
    const existing = await stat(dest).catch(() => undefined);
    if (!existing) {
      await rename(tree, dest);
      return;
    }
    if (!existing.isDirectory()) throw new Error(`--output type=local: ${dest} exists and is not a directory`);
    for (const name of await readdir(tree)) {
      await rm(join(dest, name), { recursive: true, force: true });
      await rename(join(tree, name), join(dest, name));
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Writes the image's filesystem as one tar to `dest` (`-`: stdout). */
export async function writeFilesystemTar(store: ContentStore, image: ImageLayers, dest: string, signal?: AbortSignal): Promise<void> {
  const work = join(dest === '-' ? tmpdir() : dirname(resolve(dest)), `.builder-tar-${randomBytes(6).toString('hex')}.tmp`);
  try {
    const tree = await unpack(store, image, work, signal);
    // The tree, packed as a layer would be (deterministic order, numeric owners), in a store of its own.
    const scratchStore = new ContentStore(join(work, 'store'));
    await scratchStore.init();
    const tar = await writeLayer(layoutOf(tree, work), scratchStore);
    await writeOutputFile(dest, (out) => pipeline(createReadStream(scratchStore.path(tar.digest)), out, { end: dest !== '-' }), signal);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Applies the layers into `work/rootfs` and returns that directory. */
async function unpack(store: ContentStore, image: ImageLayers, work: string, signal: AbortSignal | undefined): Promise<string> {
  const tree = join(work, 'rootfs');
  await mkdir(join(work, 'scratch'), { recursive: true });
  await mkdir(tree, { mode: 0o755 });
  const layout = layoutOf(tree, work);
  for (const [i, layer] of image.layers.entries()) {
    signal?.throwIfAborted();
    await applyLayer(layout, store.read(layer.digest), layer.mediaType, { diffID: image.diffIDs[i], layerName: layer.digest });
  }
  return tree;
}

/** A full tree with nothing below it: what the native snapshotter applies layers into. */
function layoutOf(tree: string, work: string): SnapshotLayout {
  return { key: 'export', kind: 'active', snapshotter: 'native', dir: tree, parents: [], scratch: join(work, 'scratch') };
}

/** Gives the tree to `uid:gid`, keeping setuid/setgid bits (chown clears them, even for root). */
async function ownAll(path: string, uid: number, gid: number): Promise<void> {
  const st = await lstat(path);
  if (st.uid !== uid || st.gid !== gid) {
    await lchown(path, uid, gid);
    if (!st.isSymbolicLink() && st.mode & 0o6000) await chmod(path, st.mode & 0o7777);
  }
  if (!st.isDirectory()) return;
  for (const name of await readdir(path)) await ownAll(join(path, name), uid, gid);
}

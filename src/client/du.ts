// `du()`: what the state directory holds, by kind, and what pruning would free. Read-only and
// without the state lock, as `docker system df`: a build running meanwhile may change the figures.

import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CacheIndex } from '../cache/cache-index.js';
import { ContentStore } from '../cache/content-store.js';
import { diskUsageOf, type DiskUsage } from '../cache/gc.js';
import { ImageStore } from '../cache/image-store.js';
import { defaultStateRoot } from '../cache/state-root.js';
import { createSnapshotter, type LocalSnapshotter } from '../snapshotter/index.js';

export type { DiskUsage, StoreEntry } from '../cache/gc.js';

export interface DuOptions {
  /** State directory; default as for `build()`. */
  root?: string;
}

export async function du(opts: DuOptions = {}): Promise<DiskUsage & { root: string }> {
  const root = resolve(opts.root ?? defaultStateRoot());
  if (!(await exists(join(root, 'blobs', 'sha256')))) throw new Error(`state directory ${root} does not exist or holds no store`);
  const state = { root, store: new ContentStore(root), images: new ImageStore(root), cache: new CacheIndex(root) };
  return { root, ...(await diskUsageOf(state, await existingSnapshotter(root))) };
}

/** The snapshotter of `root`, unless no build ever made one there (opening it would create it). */
export async function existingSnapshotter(root: string): Promise<LocalSnapshotter | undefined> {
  return (await exists(join(root, 'driver'))) ? createSnapshotter(root) : undefined;
}

function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

// `du()`: what the state directory holds, by kind, and what pruning would free. Read-only and
// without the state lock, as `docker system df`: a build running meanwhile may change the figures.

import { join, resolve } from 'node:path';
import { CacheIndex } from '../cache/cache-index.js';
import { ContentStore } from '../cache/content-store.js';
import { diskUsageOf, type DiskUsage } from '../cache/gc.js';
import { ImageStore } from '../cache/image-store.js';
import { defaultStateRoot } from '../cache/state-root.js';
import { createSnapshotter, type LocalSnapshotter } from '../snapshotter/index.js';
import { pathExists } from '../util/path-exists.js';

export type { DiskUsage, StoreEntry } from '../cache/gc.js';

export interface DuOptions {
  /** State directory; default as for `build()`. */
  root?: string;
}

export async function du(opts: DuOptions = {}): Promise<DiskUsage & { root: string }> {
  const root = resolve(opts.root ?? defaultStateRoot());
  if (!(await pathExists(join(root, 'blobs', 'sha256')))) throw new Error(`state directory ${root} does not exist or holds no store`);
  const state = { root, store: new ContentStore(root), images: new ImageStore(root), cache: new CacheIndex(root) };
  return { root, ...(await diskUsageOf(state, await existingSnapshotter(root))) };
}

/** The snapshotter of `root`, unless no build ever made one there (opening it would create it). */
export async function existingSnapshotter(root: string): Promise<LocalSnapshotter | undefined> {
  return (await pathExists(join(root, 'driver'))) ? createSnapshotter(root) : undefined;
}


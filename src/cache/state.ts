// The state directory: content store, image store, cache index and snapshots of one user.
// One build at a time owns it (a lock file naming the owner's pid); a lock left by a process
// that died is taken over, which is what lets the next run sweep what a crash left behind.

import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CacheIndex } from './cache-index.js';
import { ContentStore } from './content-store.js';
import { ImageStore } from './image-store.js';

export { defaultStateRoot } from './state-root.js';


export interface State {
  root: string;
  store: ContentStore;
  images: ImageStore;
  cache: CacheIndex;
  /** Where per-context stat caches live. */
  statCacheDir: string;
  release(): Promise<void>;
}

export interface OpenStateOptions {
  /** How long to wait for another build that holds the lock. */
  waitMs?: number;
  signal?: AbortSignal;
}

export async function openState(root: string, opts: OpenStateOptions = {}): Promise<State> {
  await mkdir(root, { recursive: true });
  const lockFile = join(root, 'lock');
  await acquireLock(lockFile, opts.waitMs ?? 10 * 60_000, opts.signal);
  try {
    const store = new ContentStore(root);
    const images = new ImageStore(root);
    const cache = new CacheIndex(root);
    await store.init();
    await images.init();
    await cache.init();
    return {
      root,
      store,
      images,
      cache,
      statCacheDir: join(root, 'cache', 'context'),
      release: () => rm(lockFile, { force: true }),
    };
  } catch (err) {
    await rm(lockFile, { force: true });
    throw err;
  }
}

async function acquireLock(lockFile: string, waitMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fh = await open(lockFile, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim());
    if (!owner || !isAlive(owner)) {
      // Left by a process that is gone: take it over.
      await rm(lockFile, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`state directory ${lockFile.slice(0, -'/lock'.length)} is in use by process ${owner}`);
    await sleep(200, undefined, { signal });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// The state directory: content store, image store, cache index and snapshots of one user.
// One build at a time owns it (a lock file naming the owner's pid); a lock left by a process
// that died is taken over. A build that ends cleanly leaves a `clean` mark, which the next one
// consumes: without it, the next build sweeps what a crash, failure or interruption left behind.

import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
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
  /** Whether the previous owner finished cleanly, leaving no container, mount or temporary snapshot to sweep. */
  previousClean: boolean;
  /** Lets go of the directory; `clean`: this build left nothing behind that needs sweeping. */
  release(opts?: { clean?: boolean }): Promise<void>;
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
  const cleanMark = join(root, 'clean');
  try {
    const previousClean = await rm(cleanMark).then(
      () => true,
      () => false,
    );
    const store = new ContentStore(root);
    const images = new ImageStore(root);
    const cache = new CacheIndex(root);
    await Promise.all([store.init(), images.init(), cache.init()]);
    return {
      root,
      store,
      images,
      cache,
      statCacheDir: join(root, 'cache', 'context'),
      previousClean,
      release: async ({ clean = false } = {}) => {
        if (clean) await writeFile(cleanMark, '');
        await rm(lockFile, { force: true });
      },
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

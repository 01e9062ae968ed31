// The state directory: content store, image store, cache index and snapshots of one user.
//
// src/cache owns the state directory's files: blobs by digest (content-store.ts), named images
// (image-store.ts, index.json), cache records by key (cache-index.ts), context checksums with a
// stat cache (checksum.ts), the directories of RUN --mount=type=cache kept between builds
// (cache-mounts.ts, `cache-mounts/<digest of id and seed>/`), and the locks. It must not know
// Dockerfile syntax, registries or how steps run.
//
// The directory holds every image's files (setuid binaries included) and configs, so it is private to its
// owner (0700, fixed on open), as Docker keeps /var/lib/docker.
//
// One build at a time owns it: it holds the lock `lock/` (see lock.ts), taken over from an owner
// that died. A build that ends cleanly leaves a `clean` mark, which the next one consumes: without it, the
// next build sweeps what a crash, failure or interruption left behind.

import { chmod, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CacheIndex } from './cache-index.js';
import { ContentStore } from './content-store.js';
import { ImageStore } from './image-store.js';
import { acquireLock } from './lock.js';

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
  /** Told once, after about a second, that another live process holds the lock. */
  onWait?: (message: string) => void;
}

export async function openState(root: string, opts: OpenStateOptions = {}): Promise<State> {
  await makePrivate(root);
  const unlock = await acquireLock(join(root, 'lock'), `state directory ${root}`, {
    waitMs: opts.waitMs,
    signal: opts.signal,
    onWait: (pid) => opts.onWait?.(`waiting for the state directory lock held by PID ${pid} (${root})`),
  });
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
        await unlock();
      },
    };
  } catch (err) {
    await unlock();
    throw err;
  }
}

/** Creates `root` private to this user, or makes an existing one so (older versions left it 0755). */
async function makePrivate(root: string): Promise<void> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const st = await stat(root);
  if (!st.isDirectory()) throw new Error(`state directory ${root} is not a directory`);
  if ((st.mode & 0o777) !== 0o700) await chmod(root, 0o700);
}

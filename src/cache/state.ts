// The state directory: content store, image store, cache index and snapshots of one user.
// It holds every image's files (setuid binaries included) and configs, so it is private to its
// owner (0700, fixed on open), as Docker keeps /var/lib/docker.
//
// One build at a time owns it. The lock is the directory `lock/` holding one empty file named
// after its owner (pid and start time, see processToken): it appears, complete, by renaming a
// prepared directory onto `lock` (which fails while `lock` is not empty), and a lock whose owner
// is gone, or whose pid now names another process, is taken over by renaming that file to ours
// in place: `lock` never empties meanwhile, and of several waiters only one rename can succeed.
// A build that ends cleanly leaves a `clean` mark, which the next one consumes: without it, the
// next build sweeps what a crash, failure or interruption left behind.

import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, rename, rm, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOwnerAlive, processToken } from '../snapshotter/exec.js';
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
  /** Told once, after about a second, that another live process holds the lock. */
  onWait?: (message: string) => void;
}

export async function openState(root: string, opts: OpenStateOptions = {}): Promise<State> {
  await makePrivate(root);
  const unlock = await acquireLock(root, opts);
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

const POLL_MS = 100;
const TELL_AFTER_MS = 1000;

/** Takes the lock of the state directory `root`; resolves to the function that lets it go. */
async function acquireLock(root: string, opts: OpenStateOptions): Promise<() => Promise<void>> {
  const lockDir = join(root, 'lock');
  const me = processToken();
  const started = Date.now();
  const deadline = started + (opts.waitMs ?? 10 * 60_000);
  let told = false;
  // Prepared beside `lock`, so that the lock appears with its owner already named.
  const prepared = join(root, `lock.${me}.${randomBytes(6).toString('hex')}`);
  await mkdir(prepared);
  await writeFile(join(prepared, me), '');
  try {
    for (const dead of await deadPreparedLocks(root)) await rm(dead, { recursive: true, force: true });
    for (;;) {
      try {
        await rename(prepared, lockDir);
        break;
      } catch (err) {
        // ENOTEMPTY or EEXIST: held; ENOTDIR: a lock file of an older version.
        if (!['ENOTEMPTY', 'EEXIST', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      }
      const owner = await lockOwner(lockDir);
      if (owner === undefined) continue; // let go of meanwhile
      if (!owner.alive) {
        if (await takeOver(lockDir, owner.entry, me)) break;
        continue;
      }
      const waited = Date.now() - started;
      if (Date.now() >= deadline) {
        throw new Error(`state directory ${root} is in use by PID ${owner.pid}: gave up waiting for its lock after ${Math.round(waited / 1000)}s`);
      }
      if (!told && waited >= TELL_AFTER_MS) {
        told = true;
        opts.onWait?.(`waiting for the state directory lock held by PID ${owner.pid} (${root})`);
      }
      await sleep(POLL_MS, undefined, { signal: opts.signal });
    }
  } finally {
    await rm(prepared, { recursive: true, force: true });
  }
  let released = false;
  return async () => {
    // Once only: in this process, a later openState() has the same name in the lock.
    if (released) return;
    released = true;
    await rm(join(lockDir, me), { force: true });
    // Fails (harmlessly) once the next owner has renamed its own lock into place.
    await rmdir(lockDir).catch(() => undefined);
  };
}

export interface LockOwner {
  pid: number;
  alive: boolean;
  /** The owner's file in `lock/`; absent for an older version's lock file. */
  entry?: string;
}

/** Who holds the lock `lockDir` (`ROOT/lock`); undefined when nobody does. */
export async function lockOwner(lockDir: string): Promise<LockOwner | undefined> {
  let names: string[];
  try {
    names = await readdir(lockDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code !== 'ENOTDIR') throw err;
    // An older version's lock: a file holding a pid.
    const pid = Number((await readFile(lockDir, 'utf8').catch(() => '')).trim());
    return { pid, alive: pid > 0 && pidExists(pid) };
  }
  const entry = names[0];
  if (entry === undefined) return undefined;
  return { pid: Number(entry.split('.')[0]), alive: isOwnerAlive(entry), entry };
}

/** True when the dead owner's lock became ours; false when another waiter (or a release) came first. */
async function takeOver(lockDir: string, entry: string | undefined, me: string): Promise<boolean> {
  try {
    if (entry === undefined) {
      // unlink() refuses a directory: it never removes a lock that replaced the old file meanwhile.
      await unlink(lockDir);
      return false;
    }
    await rename(join(lockDir, entry), join(lockDir, me));
    return true;
  } catch (err) {
    if (['ENOENT', 'EISDIR', 'EPERM'].includes((err as NodeJS.ErrnoException).code ?? '')) return false;
    throw err;
  }
}

/** Prepared locks (absolute paths) of processes that died before renaming them into place. */
export async function deadPreparedLocks(root: string): Promise<string[]> {
  const dead: string[] = [];
  for (const name of await readdir(root)) {
    const owner = /^lock\.(\d+\.\d+)\.[0-9a-f]+$/.exec(name)?.[1];
    if (owner !== undefined && !isOwnerAlive(owner)) dead.push(join(root, name));
  }
  return dead;
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

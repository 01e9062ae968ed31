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
// Builds share it: each registers as a user (`users/<owner>.<random>`) while it runs, so builds
// and pulls on one directory run side by side (results meet in the content-addressed stores; a
// step two of them start runs once, see CacheIndex.claim). Pruning and garbage collection need it
// alone: they hold the entry lock `lock/` (see lock.ts) until every user has left, so nothing a
// running build uses is removed, and builds that start meanwhile wait at the entry.
//
// A user that ends uncleanly (failed, interrupted) leaves a `dirty` mark, and one that died leaves
// its `users/` entry, which the next opener turns into the mark. The mark stays until someone
// holding the directory alone sweeps what was left (containers, mounts, temporary snapshots and
// files): with other builds running, their leftovers and ours cannot be told apart everywhere.
//
// Opening and releasing are a few dozen metadata calls in the state directory, made synchronously
// (see lock.ts): every command opens the directory, and a thread-pool trip per call cost more.

import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOwnerAlive, processToken } from '../util/process.js';
import { removeFileSync } from '../util/write-file.js';
import { CacheIndex } from './cache-index.js';
import { ContentStore } from './content-store.js';
import { ImageStore } from './image-store.js';
import { acquireLock, LockBusyError } from './lock.js';

export { defaultStateRoot } from './state-root.js';

export interface State {
  root: string;
  store: ContentStore;
  images: ImageStore;
  cache: CacheIndex;
  /** Where per-context stat caches live. */
  statCacheDir: string;
  /** Lets go of the directory; `clean`: this user left nothing behind that needs sweeping. */
  release(opts?: { clean?: boolean }): Promise<void>;
}

export interface OpenStateOptions {
  /** `shared` (builds, pulls: the default) or `exclusive` (prune, garbage collection). */
  access?: 'shared' | 'exclusive';
  /** How long to wait for the entry lock, and (exclusive) for the users to leave; default ten minutes. */
  waitMs?: number;
  signal?: AbortSignal;
  /** Told once, after about a second, whom this one waits for. */
  onWait?: (message: string) => void;
  /**
   * Removes what users that did not finish left behind. Called when a sweep is due and nobody else
   * uses the directory; the mark is cleared only when it succeeds.
   */
  sweep?: (root: string) => Promise<void>;
}

/** `open` gave up: another process holds the directory (see LockBusyError for the entry lock). */
export class StateBusyError extends Error {
  constructor(
    readonly root: string,
    readonly pid: number,
    waitedMs: number,
  ) {
    super(`state directory ${root} is in use by PID ${pid}: gave up waiting for it after ${Math.round(waitedMs / 1000)}s`);
    this.name = 'StateBusyError';
  }
}

const TELL_AFTER_MS = 1000;

export async function openState(root: string, opts: OpenStateOptions = {}): Promise<State> {
  const created = makePrivate(root);
  const started = Date.now();
  const waitMs = opts.waitMs ?? 10 * 60_000;
  const letGo = await acquireLock(join(root, 'lock'), `state directory ${root}`, {
    waitMs,
    signal: opts.signal,
    onWait: (pid) => opts.onWait?.(`waiting for the state directory lock held by PID ${pid} (${root})`),
  }).catch((err: unknown) => {
    throw err instanceof LockBusyError ? new StateBusyError(root, err.pid, Date.now() - started) : err;
  });
  const dirtyMark = join(root, 'dirty');
  let user: string | undefined;
  try {
    await forgetDeadUsers(root, dirtyMark, created);
    if (opts.access === 'exclusive') await waitForUsers(root, dirtyMark, started + waitMs, opts);
    const alone = opts.access === 'exclusive' || (await liveUsers(root)).length === 0;
    if (alone && opts.sweep && existsSync(dirtyMark)) {
      await opts.sweep(root);
      removeFileSync(dirtyMark);
    }
    const store = new ContentStore(root);
    const images = new ImageStore(root);
    const cache = new CacheIndex(root);
    await Promise.all([store.init(), images.init(), cache.init()]);
    if (opts.access !== 'exclusive') {
      user = join(root, 'users', `${processToken()}.${randomBytes(6).toString('hex')}`);
      writeFileSync(user, '');
      await letGo();
    }
    let released = false;
    return {
      root,
      store,
      images,
      cache,
      statCacheDir: join(root, 'cache', 'context'),
      release: async ({ clean = false } = {}) => {
        if (released) return;
        released = true;
        if (!clean) writeFileSync(dirtyMark, '');
        if (user !== undefined) removeFileSync(user);
        else await letGo();
      },
    };
  } catch (err) {
    if (user !== undefined) removeFileSync(user);
    await letGo();
    throw err;
  }
}

/** The pids of the processes using state directory `root` now (a process may hold it more than once). */
export async function liveUsers(root: string): Promise<number[]> {
  const names = usersIn(root);
  return names.flatMap((name) => {
    const owner = ownerOf(name);
    return owner !== undefined && isOwnerAlive(owner) ? [Number(owner.split('.')[0])] : [];
  });
}

/** `users/` entries of processes that are gone (they did not finish), as absolute paths. */
export async function deadUsers(root: string): Promise<string[]> {
  const names = usersIn(root);
  return names.filter((name) => !isOwnerAlive(ownerOf(name) ?? '')).map((name) => join(root, 'users', name));
}

/** The names in `users/`; none when it is not there. */
function usersIn(root: string): string[] {
  try {
    return readdirSync(join(root, 'users'));
  } catch {
    return [];
  }
}

/** `<pid>.<start time>` of a `users/` entry. */
function ownerOf(name: string): string | undefined {
  return /^(\d+\.\d+)\./.exec(name)?.[1];
}

/**
 * Turns the entries of users that died into the dirty mark. A directory this version never
 * opened (no `users/`) is trusted only if it was `created` just now (nothing can be left in it)
 * or an older version's `clean` mark vouches for it.
 */
async function forgetDeadUsers(root: string, dirtyMark: string, created = false): Promise<void> {
  const users = join(root, 'users');
  const legacyClean = join(root, 'clean');
  if (!existsSync(users)) {
    const vouched = created || existsSync(legacyClean);
    mkdirSync(users);
    if (!vouched) writeFileSync(dirtyMark, '');
  }
  removeFileSync(legacyClean);
  const dead = await deadUsers(root);
  if (dead.length === 0) return;
  writeFileSync(dirtyMark, '');
  for (const path of dead) removeFileSync(path);
}

/** Holding the entry lock, waits until no other process uses the directory. */
async function waitForUsers(root: string, dirtyMark: string, deadline: number, opts: OpenStateOptions): Promise<void> {
  const started = Date.now();
  let told = false;
  for (;;) {
    const live = await liveUsers(root);
    if (live.length === 0) return;
    const pid = live[0] as number;
    if (Date.now() >= deadline) throw new StateBusyError(root, pid, Date.now() - started);
    if (!told && Date.now() - started >= TELL_AFTER_MS) {
      told = true;
      opts.onWait?.(`waiting for ${live.length === 1 ? `the build of PID ${pid}` : `${live.length} builds (PIDs ${[...new Set(live)].join(', ')})`} to finish (${root})`);
    }
    await sleep(100, undefined, { signal: opts.signal });
    await forgetDeadUsers(root, dirtyMark);
  }
}


/**
 * Creates `root` private to this user, or makes an existing one so (older versions left it 0755).
 * True when it created `root`.
 */
function makePrivate(root: string): boolean {
  const created = mkdirSync(root, { recursive: true, mode: 0o700 }) !== undefined;
  const st = statSync(root);
  if (!st.isDirectory()) throw new Error(`state directory ${root} is not a directory`);
  if ((st.mode & 0o777) !== 0o700) chmodSync(root, 0o700);
  return created;
}

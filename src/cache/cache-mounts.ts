// Cache mounts (RUN --mount=type=cache): directories kept in the state directory between steps
// and builds, never part of a layer or a cache key. The solver asks for one through its
// CacheMountStore port.
//
// Layout, under <state root>/cache-mounts/:
//
//   <hex>/              one cache: sha256 of its id and seed key (ids are arbitrary strings)
//     cache.json        { id, seedKey?, created, lastUsed }, for disk usage and pruning
//     lock/             held while a user picks an instance, or creates and seeds one
//     1/ 2/ …           the instances, the directories mounted: a second exists only when a user
//                       found the first held and was not to wait for it
//     1.lock            held by the one private or locked user of instance 1
//     1-<hex>.lock      held by each shared user of instance 1, any number at once
//     new-<hex>/        an instance being made (owner and mode set, seeded), then renamed to its
//                       number: a crash leaves no half-seeded instance, only this, swept later
//
// Sharing, as BuildKit's cacheRefGetter (solver/llbsolver/mounts/mount.go) picks:
//   shared   the instance other shared users hold, else the first free one, else a new one;
//   private  the first free instance, else a new one;
//   locked   the first free instance, else (when all are held, by any kind of user) waits;
//            a new one only when there is none.
// So a locked user waits for shared users to finish, and a shared user that finds the only
// instance held by a locked or private user gets a new one. Holds are locks (lock.ts): the rules
// hold between processes on one state directory, and a holder that died lets go.
//
// A container may leave symlinks in an instance: the host only makes and seeds the fresh
// directory, and removes (rm, which does not follow links) only directories no container saw.

import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256 } from '../oci/digest.js';
import type { CacheMountLease, CacheMountRequest, CacheMountStore } from '../solver/solver.js';
import { acquireLock, lockOwner } from './lock.js';

/** What cache.json holds. */
export interface CacheMountRecord {
  id: string;
  seedKey?: string;
  /** ISO 8601 times. */
  created: string;
  lastUsed: string;
}

/** How often a locked user looks again while every instance is held (as BuildKit). */
const WAIT_POLL_MS = 100;

const INSTANCE = /^\d+$/;
/** `N.lock`: the private or locked user of instance N; `N-<hex>.lock`: one shared user. */
const HOLD = /^(\d+)(-[0-9a-f]+)?\.lock$/;
const NEW_INSTANCE = 'new-';

type Use = 'free' | 'shared' | 'exclusive';

/** An instance taken, and how to let go of it. */
interface Held {
  dir: string;
  letGo: () => Promise<void>;
}

export class CacheMounts implements CacheMountStore {
  private readonly dir: string;

  constructor(root: string) {
    this.dir = join(root, 'cache-mounts');
  }

  async acquire(request: CacheMountRequest): Promise<CacheMountLease> {
    const cache = join(this.dir, sha256(JSON.stringify([request.id, request.seedKey ?? null])).slice('sha256:'.length));
    const what = `cache mount ${JSON.stringify(request.id)}`;
    for (;;) {
      request.signal?.throwIfAborted();
      const unlock = await lockCache(cache, what, request.signal);
      let taken: Held | undefined;
      try {
        taken = await take(cache, what, request);
      } catch (err) {
        await unlock();
        // A first use that failed (its seed, say) leaves no empty cache behind.
        await rmdir(cache).catch(() => undefined);
        throw err;
      }
      await unlock();
      if (taken) return lease(cache, what, request, taken);
      await sleep(WAIT_POLL_MS, undefined, { signal: request.signal });
    }
  }
}

/** Takes the lock of `cache`, creating its directory (again, if a failed first use removed it meanwhile). */
async function lockCache(cache: string, what: string, signal?: AbortSignal): Promise<() => Promise<void>> {
  for (;;) {
    await mkdir(cache, { recursive: true });
    try {
      return await acquireLock(join(cache, 'lock'), what, { pollMs: 10, signal });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/**
 * With the cache's lock held: holds the instance `request.sharing` gets, creating it when needed;
 * undefined when a locked user must wait.
 */
async function take(cache: string, what: string, request: CacheMountRequest): Promise<Held | undefined> {
  const names = await readdir(cache);
  const uses = new Map<number, Use>();
  for (const name of names) {
    if (INSTANCE.test(name)) uses.set(Number(name), 'free');
    // Only a process that died while making an instance leaves one (the lock is ours).
    if (name.startsWith(NEW_INSTANCE)) await rm(join(cache, name), { recursive: true, force: true });
  }
  for (const name of names) {
    const hold = HOLD.exec(name);
    if (!hold) continue;
    const owner = await lockOwner(join(cache, name));
    if (owner === undefined) continue;
    if (!owner.alive) {
      await rm(join(cache, name), { recursive: true, force: true });
      continue;
    }
    const n = Number(hold[1]);
    if (uses.has(n) && uses.get(n) !== 'exclusive') uses.set(n, hold[2] ? 'shared' : 'exclusive');
  }
  const instances = [...uses.keys()].sort((a, b) => a - b);
  const free = instances.find((n) => uses.get(n) === 'free');
  let n = request.sharing === 'shared' ? (instances.find((n) => uses.get(n) === 'shared') ?? free) : free;
  if (n === undefined) {
    if (request.sharing === 'locked' && instances.length > 0) return undefined;
    n = (instances.at(-1) ?? 0) + 1;
    await create(cache, String(n), request);
  }
  const holdName = request.sharing === 'shared' ? `${n}-${randomBytes(6).toString('hex')}.lock` : `${n}.lock`;
  const letGo = await acquireLock(join(cache, holdName), what, { waitMs: 0 });
  return { dir: join(cache, String(n)), letGo };
}

/** Makes instance `name` whole under a temporary name: mode and owner set, then seeded. */
async function create(cache: string, name: string, request: CacheMountRequest): Promise<void> {
  const dir = join(cache, `${NEW_INSTANCE}${randomBytes(6).toString('hex')}`);
  try {
    await mkdir(dir);
    await chown(dir, request.uid, request.gid);
    // After chown, which clears set-id bits; and not through mkdir, which the umask narrows.
    await chmod(dir, request.mode & 0o7777);
    await request.seed?.(dir);
    await rename(dir, join(cache, name));
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  await writeRecord(cache, request);
}

function lease(cache: string, what: string, request: CacheMountRequest, taken: Held): CacheMountLease {
  let released = false;
  return {
    dir: taken.dir,
    release: async () => {
      if (released) return;
      released = true;
      await taken.letGo();
      const unlock = await lockCache(cache, what);
      try {
        await writeRecord(cache, request);
      } finally {
        await unlock();
      }
    },
  };
}

/** Writes cache.json with last use now (and creation, the first time); the cache's lock is held. */
async function writeRecord(cache: string, request: CacheMountRequest): Promise<void> {
  const file = join(cache, 'cache.json');
  const now = new Date().toISOString();
  const previous = await readRecord(cache);
  const record: CacheMountRecord = { id: request.id, ...(request.seedKey !== undefined && { seedKey: request.seedKey }), created: previous?.created ?? now, lastUsed: now };
  // One writer at a time (the lock): a fixed temporary name, overwritten after a crash.
  await writeFile(`${file}.tmp`, JSON.stringify(record));
  await rename(`${file}.tmp`, file);
}

/** The cache.json of `cache`, if there is a readable one. */
function readRecord(cache: string): Promise<CacheMountRecord | undefined> {
  return readFile(join(cache, 'cache.json'), 'utf8').then(
    (text) => JSON.parse(text) as CacheMountRecord,
    () => undefined,
  );
}

/** A cache as prune and disk usage see it. */
export interface StoredCacheMount {
  /** Its directory, `cache-mounts/<hex>`. */
  dir: string;
  /** The id steps named it by (unknown when cache.json is missing). */
  id?: string;
  /** Last release by a step; the directory's mtime when cache.json is missing. */
  lastUsed: Date;
  /** A live process holds one of its instances. */
  held: boolean;
}

/** Every cache under state directory `root`. */
export async function listCacheMounts(root: string): Promise<StoredCacheMount[]> {
  const base = join(root, 'cache-mounts');
  const found: StoredCacheMount[] = [];
  for (const name of await readdir(base).catch(() => [] as string[])) {
    const dir = join(base, name);
    const record = await readRecord(dir);
    const lastUsed = record ? new Date(record.lastUsed) : await stat(dir).then((st) => st.mtime, () => undefined);
    if (lastUsed === undefined) continue; // removed meanwhile
    found.push({ dir, ...(record && { id: record.id }), lastUsed, held: await isHeld(dir) });
  }
  return found;
}

/** Removes a cache unless a live process holds one of its instances; true when it is gone. */
export async function removeCacheMount(dir: string): Promise<boolean> {
  const unlock = await acquireLock(join(dir, 'lock'), `cache mount ${dir}`, { pollMs: 10 });
  try {
    if (await isHeld(dir)) return false;
    // Renamed out of the way first: a crash midway leaves no half-deleted cache to mount.
    const doomed = `${dir}.removing-${randomBytes(6).toString('hex')}`;
    await rename(dir, doomed);
    await rm(doomed, { recursive: true, force: true });
    return true;
  } finally {
    await unlock();
  }
}

async function isHeld(dir: string): Promise<boolean> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (HOLD.test(name) && (await lockOwner(join(dir, name)))?.alive) return true;
  }
  return false;
}

// Locks between processes sharing a state directory (the state lock, the image index's lock).
//
// A lock is a directory holding one empty file named after its owner (pid and start time, see
// processToken): it appears, complete, by renaming a prepared directory `NAME.<owner>.<random>`
// onto `NAME` (which fails while `NAME` is not empty), and a lock whose owner is gone, or whose
// pid now names another process, is taken over by renaming that file to ours in place: the lock
// never empties meanwhile, and of several waiters only one rename can succeed.
//
// The file system calls are synchronous: a few metadata calls in the state directory, each of
// microseconds, where a trip through the thread pool costs more than the call (and taking and
// letting go of the state lock is part of every command). Only the waiting is asynchronous.

import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOwnerAlive, processToken } from '../util/process.js';
import { removeFileSync } from '../util/write-file.js';

export interface LockOptions {
  /** How long to wait for a live owner (default ten minutes). */
  waitMs?: number;
  /** How often to look again while a live owner holds it (default 100 ms). */
  pollMs?: number;
  signal?: AbortSignal;
  /** Told once, after about a second, the PID of the live process that holds the lock. */
  onWait?: (pid: number) => void;
}

const TELL_AFTER_MS = 1000;

/** acquireLock() gave up after `waitMs`: a live process holds the lock. */
export class LockBusyError extends Error {
  constructor(
    what: string,
    readonly pid: number,
    waitedMs: number,
  ) {
    super(`${what} is in use by PID ${pid}: gave up waiting for its lock after ${Math.round(waitedMs / 1000)}s`);
    this.name = 'LockBusyError';
  }
}

/**
 * Takes the lock `lockDir`; resolves to the function that lets it go. `what` names the locked
 * thing in the error given after `waitMs`. A process waits for its own locks as for any other's.
 */
export async function acquireLock(lockDir: string, what: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  const me = processToken();
  const started = Date.now();
  const deadline = started + (opts.waitMs ?? 10 * 60_000);
  let told = false;
  // Prepared beside the lock, so that the lock appears with its owner already named.
  const prepared = `${lockDir}.${me}.${randomBytes(6).toString('hex')}`;
  mkdirSync(prepared);
  writeFileSync(join(prepared, me), '');
  try {
    for (const dead of await deadPreparedLocks(dirname(lockDir))) removeLock(dead);
    for (;;) {
      try {
        renameSync(prepared, lockDir);
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
        throw new LockBusyError(what, owner.pid, waited);
      }
      if (!told && waited >= TELL_AFTER_MS) {
        told = true;
        opts.onWait?.(owner.pid);
      }
      await sleep(opts.pollMs ?? 100, undefined, { signal: opts.signal });
    }
  } finally {
    removeLock(prepared);
  }
  let released = false;
  return async () => {
    // Once only: in this process, a later holder has the same name in the lock.
    if (released) return;
    released = true;
    removeFileSync(join(lockDir, me));
    // Fails (harmlessly) once the next owner has renamed its own lock into place.
    try {
      rmdirSync(lockDir);
    } catch {
      // taken by another
    }
  };
}

export interface LockOwner {
  pid: number;
  alive: boolean;
  /** The owner's file in the lock directory; absent for an older version's lock file. */
  entry?: string;
}

/** Who holds the lock `lockDir`; undefined when nobody does. */
export async function lockOwner(lockDir: string): Promise<LockOwner | undefined> {
  let names: string[];
  try {
    names = readdirSync(lockDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code !== 'ENOTDIR') throw err;
    // An older version's lock: a file holding a pid.
    let text = '';
    try {
      text = readFileSync(lockDir, 'utf8');
    } catch {
      // removed meanwhile
    }
    const pid = Number(text.trim());
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
      unlinkSync(lockDir);
      return false;
    }
    renameSync(join(lockDir, entry), join(lockDir, me));
    return true;
  } catch (err) {
    if (['ENOENT', 'EISDIR', 'EPERM'].includes((err as NodeJS.ErrnoException).code ?? '')) return false;
    throw err;
  }
}

/**
 * Removes the lock `lockDir` when its owner is gone. For a sweep, run by whoever uses the state
 * directory alone: a lock that nobody takes again (a rebuild naming the same image never writes
 * the index) would otherwise stay behind its dead owner.
 */
export async function removeDeadLock(lockDir: string): Promise<void> {
  const owner = await lockOwner(lockDir);
  if (owner && !owner.alive) removeLock(lockDir);
}

/**
 * Removes the lock `path` (a directory of owner files, or an older version's lock file) if it is
 * there, as rmSync({ recursive: true, force: true }) would without loading Node's recursive
 * remover. A lock that another process renamed into place meanwhile (its directory is no
 * longer empty) stays: it is that process's.
 */
function removeLock(path: string): void {
  let names: string[];
  try {
    names = readdirSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'ENOTDIR') throw err;
    return removeFileSync(path);
  }
  for (const name of names) removeFileSync(join(path, name));
  try {
    rmdirSync(path);
  } catch (err) {
    if (!['ENOENT', 'ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
  }
}

/** `NAME.<owner>.<random>`: a lock being prepared; locks are named `lock` or `<something>.lock`. */
const PREPARED_LOCK = /^(?:[\w-]+\.)?lock\.(\d+\.\d+)\.[0-9a-f]{12}$/;

/** Whether a file name in the state directory is a prepared lock (never a temporary file to sweep). */
export function isPreparedLock(name: string): boolean {
  return PREPARED_LOCK.test(name);
}

/** Prepared locks in `dir` (absolute paths) of processes that died before renaming them into place. */
export async function deadPreparedLocks(dir: string): Promise<string[]> {
  const dead: string[] = [];
  for (const name of readdirSync(dir)) {
    const owner = PREPARED_LOCK.exec(name)?.[1];
    if (owner !== undefined && !isOwnerAlive(owner)) dead.push(join(dir, name));
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

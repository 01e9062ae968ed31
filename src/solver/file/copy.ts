// COPY's file semantics, applied to a mounted destination root: a directory source copies its
// contents, a file lands in the destination directory when the destination ends with `/`, is
// an existing directory, or there are several sources; ownership is 0:0 from the context and
// preserved from another stage unless --chown says otherwise; modes are kept unless --chmod.

import type { Stats } from 'node:fs';
import {
  chmodSync,
  chownSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
} from 'node:fs';
import { chmod, chown, lstat, mkdir, rm, writeFile } from 'node:fs/promises';
import { join, posix, relative } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { walk, type Source, type SourceFilter, type WalkEntry } from '../../util/select.js';
import { resolveInRoot, resolveInRootSync } from '../../util/scoped-path.js';
import { childPath, copyFileKeepingHoles } from '../../snapshotter/fsutil.js';
import type { CopyReuse } from './reuse.js';

export interface Owner {
  uid: number;
  gid: number;
}

export interface CopyParams {
  srcRoot: string;
  /** Sources already expanded and resolved inside `srcRoot` (see selectSources). */
  sources: readonly Source[];
  filter?: SourceFilter;
  destRoot: string;
  /** Absolute path in the destination; a trailing `/` means a directory. */
  dest: string;
  /** Owner for every copied entry; undefined keeps the source's owners. */
  owner?: Owner;
  chmod?: number;
  /** Keep each source's path (its parent directories) under `dest` (COPY --parents). */
  parents?: boolean;
  /** An earlier run of this copy whose unchanged files are re-used (see reuse.ts). */
  reuse?: CopyReuse;
  /**
   * Walks of sources in `srcRoot` with `filter` made already (the cache key's), by source path:
   * a source found here is copied from these entries and their lstats, not walked again.
   */
  walks?: ReadonlyMap<string, Iterable<WalkEntry>>;
}

export async function copySources(p: CopyParams): Promise<void> {
  const intoDir = p.dest.endsWith('/') || p.sources.length > 1;
  const dirTimes: Array<{ path: string; atime: Date; mtime: Date }> = [];
  // Files hardlinked to each other in the source stay hardlinked in the copy, as in BuildKit.
  const copiedInodes = new Map<string, string>();
  // Host paths of the destination directories this copy made or checked: resolving each entry's
  // parent again, one lstat per component, made deep trees cost depth² lstats of depth-long paths.
  const dirs = new Map<string, string>();
  const hostDir = (dir: string): string => {
    let host = dirs.get(dir);
    if (host === undefined) dirs.set(dir, (host = resolveInRootSync(p.destRoot, dir)));
    return host;
  };
  // Whether a new file in each host directory gets the group of this process (no setgid bit on
  // the directory): then a file created with the owner it should have needs no chown.
  const creator = process.geteuid && process.getegid ? { uid: process.geteuid(), gid: process.getegid() } : undefined;
  const ownGroupDirs = new Map<string, boolean>();
  const newFilesOwnedBy = (dir: string): Owner | undefined => {
    let own = ownGroupDirs.get(dir);
    if (own === undefined) ownGroupDirs.set(dir, (own = (lstatSync(dir).mode & 0o2000) === 0));
    return own ? creator : undefined;
  };
  // Host paths are made by joining onto the root: the path below it is what follows its prefix.
  const rootPrefix = join(p.destRoot, '/');
  const belowRoot = (hostPath: string): string => (hostPath.startsWith(rootPrefix) ? hostPath.slice(rootPrefix.length) : relative(p.destRoot, hostPath));
  let copied = 0;
  // One source writes each destination path once: a placeholder is never overwritten later on.
  const reuse = p.sources.length === 1 ? p.reuse : undefined;
  for (const src of p.sources) {
    const srcAbs = src.path === '.' ? p.srcRoot : join(p.srcRoot, src.path);
    const srcStat = await lstat(srcAbs);
    // BuildKit skips a named pipe or socket without a word; named on its own, it is a mistake.
    if (!srcStat.isDirectory() && !srcStat.isFile() && !srcStat.isSymbolicLink()) {
      throw new Error(`"${src.name}" is not a regular file, directory or symlink: it cannot be copied`);
    }
    const srcIsDir = srcStat.isDirectory();
    let target = p.dest;
    if (p.parents && src.name !== '.') target = posix.join(p.dest, src.name);
    else if (!srcIsDir && (intoDir || (await isDirectory(await resolveInRoot(p.destRoot, p.dest))))) {
      target = posix.join(p.dest, posix.basename(src.name));
    }
    await mkdirAll(p.destRoot, srcIsDir ? target : posix.dirname(target), 0o755, p.owner ?? { uid: 0, gid: 0 });
    dirs.clear();
    // The target, normalised, with one trailing `/`: the walk's paths below it are clean already.
    const targetDir = posix.join(target, '/');
    for (const entry of p.walks?.get(src.path) ?? walk(p.srcRoot, src.path, p.filter)) {
      const below = entry.rel === src.path ? '' : src.path === '.' ? entry.rel : entry.rel.slice(src.path.length + 1);
      // A directory source copies its contents: the destination directory keeps its own metadata.
      if (below === '' && entry.type === 'dir') continue;
      const destPath = below ? targetDir + below : target;
      const hostPath = destPath === '/' ? p.destRoot : childPath(hostDir(posix.dirname(destPath)), posix.basename(destPath));
      const owner = p.owner ?? { uid: entry.uid, gid: entry.gid };
      const mode = p.chmod ?? entry.mode & 0o7777;
      // Synchronous calls: a few microseconds each, where a thread-pool round trip per call made
      // copying thousands of small files several times slower. Yield now and then for signals.
      if (++copied % 256 === 0) await setImmediate();
      switch (entry.type) {
        case 'dir': {
          if (ensureDirectorySync(hostPath)) reuse?.made(hostPath);
          dirs.set(destPath, hostPath);
          chownSync(hostPath, owner.uid, owner.gid);
          chmodSync(hostPath, mode);
          ownGroupDirs.set(hostPath, (mode & 0o2000) === 0);
          const st = entry.stats;
          dirTimes.push({ path: hostPath, atime: st.atime, mtime: st.mtime });
          break;
        }
        case 'file': {
          // Files hardlinked in the source are copied: linking one later would split their group.
          // A deferred file's path is cleared when it is linked (see reuse.ts). Only the files
          // written need their whole lstat (see WalkEntry.version).
          if (entry.version.nlink <= 1) {
            if (reuse?.defer(belowRoot(hostPath), hostPath, entry, owner, mode)) break;
            copyNewFile(entry.abs, entry.stats, hostPath, owner, mode, newFilesOwnedBy(posix.dirname(hostPath)));
            break;
          }
          const st = entry.stats;
          const inode = `${st.dev}:${st.ino}`;
          const first = copiedInodes.get(inode);
          clearForFileSync(hostPath);
          if (first && first !== hostPath) {
            linkSync(first, hostPath);
            break;
          }
          copiedInodes.set(inode, hostPath);
          writeCopiedFile(entry.abs, st, hostPath, owner, mode);
          break;
        }
        case 'symlink': {
          rmSync(hostPath, { recursive: true, force: true });
          symlinkSync(readlinkSync(entry.abs), hostPath);
          lchownSync(hostPath, owner.uid, owner.gid);
          const st = entry.stats;
          lutimesSync(hostPath, st.atime, st.mtime);
          break;
        }
        case 'other':
          // sockets and fifos are not copied (as in BuildKit)
          break;
      }
    }
  }
  // Directory times last: creating their children changed them.
  for (const d of dirTimes.reverse()) utimesSync(d.path, d.atime, d.mtime);
}

/** Writes regular file `dest` as a copy of `src` (whose lstat is `st`) with `owner` and `mode`. */
export function writeCopiedFile(src: string, st: Stats, dest: string, owner: Owner, mode: number): void {
  copyFileKeepingHoles(src, dest, st);
  setCopiedAttributes(dest, st, owner, mode);
}

/** A copied file's owner, mode and times (owner first: chown clears setuid bits). */
function setCopiedAttributes(dest: string, st: Stats, owner: Owner, mode: number): void {
  chownSync(dest, owner.uid, owner.gid);
  chmodSync(dest, mode);
  utimesSync(dest, st.atime, st.mtime);
}

/**
 * writeCopiedFile for a path that is most likely new: the copy (which never opens an existing
 * name) is tried first, and only a taken name is cleared before a second try. Spares an lstat
 * of each path of a cold copy. `created`: the owner a file created in that directory gets.
 */
function copyNewFile(src: string, st: Stats, dest: string, owner: Owner, mode: number, created: Owner | undefined): void {
  try {
    copyFileKeepingHoles(src, dest, st);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    clearForFileSync(dest);
    copyFileKeepingHoles(src, dest, st);
  }
  // The new file has the owner it should have, and the copy gave it the source's mode (with its
  // setuid bits: no chown came after to clear them): two path lookups fewer per file of a COPY.
  if (created?.uid === owner.uid && created.gid === owner.gid) {
    if ((st.mode & 0o7777) !== mode) chmodSync(dest, mode);
    utimesSync(dest, st.atime, st.mtime);
    return;
  }
  setCopiedAttributes(dest, st, owner, mode);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Makes room for a new regular file at `path`: whatever is there goes, a file too, so that other
 * names hardlinked to the old one keep their content (Docker replaces the file as well).
 */
function clearForFileSync(path: string): void {
  // Most paths are new: one lstat is far cheaper than rmSync's walk of nothing.
  if (lstatSync(path, { throwIfNoEntry: false })) rmSync(path, { recursive: true, force: true });
}

/** Makes `path` a directory unless it is one; true when it made one. */
function ensureDirectorySync(path: string): boolean {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st?.isDirectory()) return false;
  if (st) rmSync(path, { force: true });
  // Parents exist unless a symlink pointed at a missing directory: create that path too.
  mkdirSync(path, { recursive: true });
  return true;
}

/** Creates the missing directories of `dir` (an image path) with `mode`, owned by `owner`. */
export async function mkdirAll(root: string, dir: string, mode: number, owner: Owner): Promise<void> {
  let current = '/';
  for (const part of dir.split('/').filter(Boolean)) {
    current = posix.join(current, part);
    const host = await resolveInRoot(root, current);
    if (await isDirectory(host)) continue;
    ensureDirectorySync(host);
    await chown(host, owner.uid, owner.gid);
    await chmod(host, mode);
  }
}

/** Creates or replaces the regular file `path` (an image path) with `data` (mkfile action). */
export async function makeFile(root: string, path: string, data: string | Uint8Array, mode: number, owner: Owner): Promise<void> {
  const dir = posix.dirname(posix.normalize(`/${path}`));
  await mkdirAll(root, dir, 0o755, owner);
  const host = join(await resolveInRoot(root, dir), posix.basename(path));
  clearForFileSync(host);
  await writeFile(host, data);
  await chown(host, owner.uid, owner.gid);
  await chmod(host, mode);
}

/**
 * Writes an exec op's transient script files into the container root; the returned function
 * removes them again (and the directories created for them), so they never reach the layer.
 */
export async function writeScripts(root: string, scripts: ReadonlyArray<{ path: string; data: string; mode: number }>): Promise<() => Promise<void>> {
  const created: string[] = [];
  for (const script of scripts) {
    let current = '/';
    for (const part of posix.dirname(posix.normalize(`/${script.path}`)).split('/').filter(Boolean)) {
      current = posix.join(current, part);
      const host = await resolveInRoot(root, current);
      if (await isDirectory(host)) continue;
      await mkdir(host);
      created.push(host);
    }
    const host = join(await resolveInRoot(root, posix.dirname(script.path)), posix.basename(script.path));
    await writeFile(host, script.data, { flag: 'wx' });
    await chmod(host, script.mode);
    created.push(host);
  }
  return async () => {
    for (const path of created.reverse()) await rm(path, { recursive: true, force: true });
  };
}

// Filesystem helpers shared by the snapshotters, layer apply and layer diff.
//
// Mostly synchronous on purpose: these run in long loops of dependent calls over many small
// files, where each async call's thread-pool round trip costs far more than the syscall
// itself. Loops release the event loop regularly (see `breather`).

import type { BigIntStats, Stats } from 'node:fs';
import {
  chmodSync,
  closeSync,
  constants as fsc,
  copyFileSync,
  fchmodSync,
  ftruncateSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { runShort } from '../util/command.js';
import { mknodSyscall } from './mount.js';
import type { Usage } from './types.js';

type Xattr = typeof import('fs-xattr');
let xattrModule: Xattr | undefined;
/** fs-xattr, loaded on first use: loading the native addon is a cost a fully cached build need not pay. */
function xattr(): Xattr {
  return (xattrModule ??= createRequire(import.meta.url)('fs-xattr') as Xattr);
}

/** What a layer's walk reads of an lstat: a Stats, or one without Stats' Dates (LstatEntry, util/lstat-numbers.ts). */
export type EntryStat = Pick<
  Stats,
  'dev' | 'ino' | 'mode' | 'nlink' | 'uid' | 'gid' | 'rdev' | 'size' | 'blocks' | 'mtimeMs' | 'isFile' | 'isDirectory' | 'isSymbolicLink' | 'isCharacterDevice' | 'isBlockDevice' | 'isFIFO'
>;

export const getAttributeSync: Xattr['getAttributeSync'] = (path, attr) => xattr().getAttributeSync(path, attr);
export const listAttributesSync: Xattr['listAttributesSync'] = (path) => xattr().listAttributesSync(path);
export const setAttributeSync: Xattr['setAttributeSync'] = (path, attr, value) => xattr().setAttributeSync(path, attr, value);
export const setAttribute: Xattr['setAttribute'] = (path, attr, value) => xattr().setAttribute(path, attr, value);

export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';
/** overlayfs bookkeeping xattrs: never copied into or out of layers. */
export const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_OPAQUE = '.wh..wh..opq';

/** overlayfs whiteout: a character device 0/0. */
export function isOverlayWhiteout(st: Pick<Stats, 'isCharacterDevice' | 'rdev'> | BigIntStats): boolean {
  return st.isCharacterDevice() && Number(st.rdev) === 0;
}

/** Whether overlayfs treats this directory as opaque (hiding the layers below). */
export function isOpaqueDirSync(path: string): boolean {
  try {
    return getAttributeSync(path, OVERLAY_OPAQUE_XATTR).toString() === 'y';
  } catch {
    return false;
  }
}

export function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export function lstatOrUndefinedSync(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * Extended attributes, sorted by name, without overlayfs' own. Symlinks are skipped: fs-xattr
 * follows links, and symlink xattrs are not portable anyway.
 */
export function readXattrsSync(path: string, st: Pick<Stats, 'isSymbolicLink'> | BigIntStats): Array<[string, Buffer]> {
  if (st.isSymbolicLink()) return [];
  return xattrsNamed(path, listXattrsSync(path));
}

/**
 * readXattrsSync of a directory in an overlay upper dir, and whether overlayfs made it opaque
 * (isOpaqueDirSync), from the one listing: most directories have no xattrs at all, and asking
 * for the opaque mark of each failed with an error to catch.
 */
export function readUpperDirXattrsSync(path: string): { xattrs: Array<[string, Buffer]>; opaque: boolean } {
  const names = listXattrsSync(path);
  // A trusted.* name is listed whenever it can be read: both need CAP_SYS_ADMIN.
  const opaque = names.includes(OVERLAY_OPAQUE_XATTR) && isOpaqueDirSync(path);
  return { xattrs: xattrsNamed(path, names), opaque };
}

/** The names of `path`'s xattrs; none where the filesystem has no xattrs. */
function listXattrsSync(path: string): string[] {
  try {
    return listAttributesSync(path);
  } catch (err) {
    if (errno(err) === 'ENOTSUP' || errno(err) === 'EOPNOTSUPP') return [];
    throw err;
  }
}

/** The values of the xattrs `names` of `path`, sorted by name, overlayfs' own left out. */
function xattrsNamed(path: string, names: string[]): Array<[string, Buffer]> {
  if (names.length === 0) return [];
  const out: Array<[string, Buffer]> = [];
  for (const n of names.filter((x) => !x.startsWith(OVERLAY_XATTR_PREFIX)).sort()) {
    try {
      out.push([n, getAttributeSync(path, n)]);
    } catch (err) {
      if (errno(err) !== 'ENODATA') throw err;
    }
  }
  return out;
}

/**
 * Returns a function to await in long synchronous loops: every `every` calls it yields to the
 * event loop (a macrotask turn) so timers and other I/O are not starved.
 */
export function breather(every = 256): () => Promise<void> | undefined {
  let n = 0;
  return () => (++n % every === 0 ? new Promise<void>((r) => setImmediate(r)) : undefined);
}

/** Adds up disk use (see Usage) of the entries it is shown: blocks allocated, each inode once. */
export class UsageCounter {
  private readonly seen = new Set<number>();
  private size = 0;

  count(st: Pick<Stats, 'ino' | 'blocks'>): void {
    if (this.seen.has(st.ino)) return;
    this.seen.add(st.ino);
    this.size += st.blocks * 512;
  }

  get usage(): Usage {
    return { size: this.size, inodes: this.seen.size };
  }

  /** What was counted, as plain data (for a counter on another thread to go on from). */
  save(): { inodes: number[]; size: number } {
    return { inodes: [...this.seen], size: this.size };
  }

  static restore(saved: { inodes: number[]; size: number }): UsageCounter {
    const counter = new UsageCounter();
    for (const ino of saved.inodes) counter.seen.add(ino);
    counter.size = saved.size;
    return counter;
  }
}

/** Disk use of the tree at `dir` (see Usage): blocks allocated, each inode counted once, without following links. */
export async function diskUsage(dir: string): Promise<Usage> {
  const counter = new UsageCounter();
  const count = (st: Stats) => counter.count(st);
  const pause = breather();
  const walk = async (path: string): Promise<void> => {
    count(lstatSync(path));
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      await pause();
      const p = join(path, entry.name);
      if (entry.isDirectory()) await walk(p);
      else count(lstatSync(p));
    }
  };
  await walk(dir);
  return counter.usage;
}

export function writeXattrsSync(path: string, xattrs: ReadonlyArray<readonly [string, Buffer]>): void {
  for (const [name, value] of xattrs) setAttributeSync(path, name, value);
}

export function xattrsEqual(a: ReadonlyArray<readonly [string, Buffer]>, b: ReadonlyArray<readonly [string, Buffer]>): boolean {
  return a.length === b.length && a.every(([n, v], i) => b[i]![0] === n && b[i]![1].equals(v));
}

/**
 * Sets owner, then mode (chown clears setuid bits), then xattrs (chown also drops
 * security.capability), then times; symlinks get owner and times only.
 */
export function applyAttrsSync(
  path: string,
  attrs: { uid: number; gid: number; mode: number; atimeMs: number; mtimeMs: number; symlink: boolean },
  xattrs: ReadonlyArray<readonly [string, Buffer]> = [],
): void {
  lchownSync(path, attrs.uid, attrs.gid);
  if (attrs.symlink) {
    lutimesSync(path, attrs.atimeMs / 1000, attrs.mtimeMs / 1000);
    return;
  }
  chmodSync(path, attrs.mode & 0o7777);
  writeXattrsSync(path, xattrs);
  utimesSync(path, attrs.atimeMs / 1000, attrs.mtimeMs / 1000);
}

function statAttrs(st: Stats): Parameters<typeof applyAttrsSync>[1] {
  return { uid: st.uid, gid: st.gid, mode: st.mode, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs, symlink: st.isSymbolicLink() };
}


/**
 * Copies the tree `src` into the new directory `dst` preserving types, modes, owners, times,
 * xattrs and hardlinks within the tree. Files are copied (reflinked where the filesystem can),
 * never hardlinked to the source, so the copy is independent of it. Synchronous calls (see
 * `breather`) because per-call thread-pool hops dominated the copy of many small files.
 */
export async function copyTree(src: string, dst: string): Promise<void> {
  const pause = breather(64);
  // First copy of each multiply-linked inode: later names link to it.
  const links = new Map<string, string>();

  async function copyDir(from: string, to: string, st: Stats): Promise<void> {
    mkdirSync(to, { mode: 0o700 });
    for (const name of readdirSync(from)) {
      await pause();
      const childFrom = join(from, name);
      const childTo = join(to, name);
      const child = lstatSync(childFrom);
      if (child.isDirectory()) await copyDir(childFrom, childTo, child);
      else await copyLeaf(childFrom, childTo, child);
    }
    applyAttrsSync(to, statAttrs(st), readXattrsSync(from, st)); // after the children changed the mtime
  }

  async function copyLeaf(from: string, to: string, st: Stats): Promise<void> {
    if (st.isFile() && st.nlink > 1) {
      const ino = `${st.dev}:${st.ino}`;
      const first = links.get(ino);
      if (first !== undefined) {
        linkSync(first, to);
        return;
      }
      links.set(ino, to);
    }
    if (st.isFile()) copyFileKeepingHoles(from, to, st);
    else if (st.isSymbolicLink()) symlinkSync(readlinkSync(from), to);
    else if (st.isCharacterDevice()) await mknod(to, 'c', devMajor(st.rdev), devMinor(st.rdev));
    else if (st.isBlockDevice()) await mknod(to, 'b', devMajor(st.rdev), devMinor(st.rdev));
    else if (st.isFIFO()) await mknod(to, 'p');
    else return; // sockets are not copied
    applyAttrsSync(to, statAttrs(st), readXattrsSync(from, st));
  }

  await copyDir(src, dst, lstatSync(src));
}

// --- holes ---------------------------------------------------------------------------------------
//
// A file with holes (`truncate -s 1G`, `dd seek=`, database files) must not turn into its full
// size of zeros when it is copied, unpacked or stored as a layer tar. Node has no SEEK_DATA, so
// zero runs are found by content, as `cp --sparse=always` does: they are skipped instead of
// written into a new file, which then reads back as zeros there.

/** Zero runs shorter than this inside a chunk are written: a hole saves less than the extra write costs. */
const MIN_HOLE = 4096;
const ZERO_PAGE = Buffer.alloc(MIN_HOLE);

function isZeroRange(buf: Buffer, start: number, end: number): boolean {
  if (buf[start] !== 0 || buf[end - 1] !== 0) return false; // most data, without a memcmp
  for (let off = start; off < end; off += MIN_HOLE) {
    const n = Math.min(MIN_HOLE, end - off);
    if (!buf.subarray(off, off + n).equals(ZERO_PAGE.subarray(0, n))) return false;
  }
  return true;
}

/**
 * The byte ranges `[start, end)` of `data` worth writing: zero pieces of MIN_HOLE bytes are left
 * out, and so are zeros at either end of the chunk (they may continue a run in the next chunk).
 */
export function dataRanges(data: Uint8Array): Array<[number, number]> {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out: Array<[number, number]> = [];
  let start = -1;
  for (let off = 0; off < buf.length; off += MIN_HOLE) {
    const end = Math.min(off + MIN_HOLE, buf.length);
    if (isZeroRange(buf, off, end)) {
      if (start >= 0) out.push([start, off]);
      start = -1;
    } else if (start < 0) {
      start = off;
    }
  }
  if (start >= 0) out.push([start, buf.length]);
  return out;
}

/**
 * Writes `data` at `position` of a file that reads as zeros wherever nothing was written (a new
 * or truncated file), leaving its zero runs as holes. A trailing run of zeros is not written
 * either: returns the offset just past the last byte written (`position` when none was), so the
 * caller knows whether the file needs an `ftruncate` to its final size.
 */
export function writeSparseSync(fd: number, data: Uint8Array, position: number): number {
  let last = 0;
  for (const [start, end] of dataRanges(data)) {
    for (let off = start; off < end; ) off += writeSync(fd, data, off, end - off, position + off);
    last = end;
  }
  return position + last;
}

/** Whether a file has holes: fewer bytes allocated than its size. */
function hasHoles(st: Stats | BigIntStats): boolean {
  return Number(st.blocks) * 512 < Number(st.size);
}

/**
 * Copies regular file `from` to the new file `to` (which must not exist), keeping its holes,
 * with the permission bits of `from` (setuid ones too), as copyFileSync gives them.
 * A reflink (FICLONE) shares the blocks and keeps holes by itself; without one, a file with
 * holes is copied chunk by chunk with its zero runs skipped, and any other file by the kernel
 * (copy_file_range), which would fill holes in.
 */
export function copyFileKeepingHoles(from: string, to: string, st: Stats): void {
  if (!hasHoles(st)) {
    copyFileSync(from, to, fsc.COPYFILE_FICLONE | fsc.COPYFILE_EXCL);
    return;
  }
  try {
    copyFileSync(from, to, fsc.COPYFILE_FICLONE_FORCE | fsc.COPYFILE_EXCL);
    return;
  } catch (err) {
    if (errno(err) === 'EEXIST') throw err;
  }
  const src = openSync(from, 'r');
  try {
    // 'w', not 'wx': a failed clone may have left the empty file behind.
    const dst = openSync(to, 'w', 0o600);
    try {
      const buf = Buffer.allocUnsafe(1024 * 1024);
      let pos = 0;
      for (let n; (n = readSync(src, buf, 0, buf.length, pos)) > 0; pos += n) writeSparseSync(dst, buf.subarray(0, n), pos);
      ftruncateSync(dst, pos);
      fchmodSync(dst, st.mode & 0o7777);
    } finally {
      closeSync(dst);
    }
  } finally {
    closeSync(src);
  }
}

/** Creates a device node or fifo (Node has no mknod). */
export async function mknod(path: string, kind: 'c' | 'b' | 'p', major = 0, minor = 0): Promise<void> {
  if (await mknodSyscall(path, kind, major, minor)) return;
  const args = kind === 'p' ? [path, 'p'] : [path, kind, String(major), String(minor)];
  await runShort('mknod', args);
}

/** Linux dev_t split (glibc's gnu_dev_major/minor), on a Number-sized rdev. */
export function devMajor(rdev: number): number {
  return ((Math.floor(rdev / 2 ** 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & 0xfffff000)) >>> 0;
}

export function devMinor(rdev: number): number {
  return ((rdev & 0xff) | (Math.floor(rdev / 2 ** 12) & 0xffffff00)) >>> 0;
}

/**
 * `dir/name` for a directory path `dir` that is normalised already (as join, realpath and
 * readdir give them) and a name or relative path without `.`, `..` or empty components: what
 * join gives there, without the normalising pass that made join the largest allocator of a walk
 * over thousands of files.
 */
export function childPath(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

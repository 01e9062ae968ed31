// An lstat that returns its numbers without a Stats object. Node 20's fs.lstatSync builds a Stats
// with four eager Dates for every call: for a context walk of thousands of files that object,
// and the collections it causes, cost about as much as the system calls themselves. A walk reads
// a handful of numbers per entry, so it reads them straight from the array Node's own lstatSync
// reads them from, and falls back to fs.lstatSync wherever that array is not what this expects.

import { constants, lstatSync } from 'node:fs';

/** The fields a walk reads, at these indexes of what lstatNumbers returns. */
export const MODE = 0;
export const UID = 1;
export const GID = 2;
export const SIZE = 3;
export const MTIME_MS = 4;
export const CTIME_MS = 5;
export const NLINK = 6;
export const INO = 7;
export const DEV = 8;
export const RDEV = 9;
export const BLOCKS = 10;
const FIELDS = 11;

/** What lstatNumbers returns: overwritten by the next call, so read at once. */
export type LstatNumbers = Readonly<Float64Array>;

const out = new Float64Array(FIELDS);

/** Node's internal fs binding's lstat: fills and returns one shared array, as lstatSync reads it. */
type BindingLstat = (path: string, bigint: false, req: undefined, throwIfNoEntry: true) => Float64Array;

/**
 * lstat(2) of `path`: mode, uid, gid, size, mtimeMs, ctimeMs, nlink, ino, dev, rdev and blocks, equal to what
 * fs.lstatSync gives (the times by Node's own formula), thrown errors as fs.lstatSync throws them.
 */
export function lstatNumbers(path: string): LstatNumbers {
  if (bindingLstat === null) bindingLstat = checkedBindingLstat();
  const raw = bindingLstat?.(path, false, undefined, true);
  if (raw === undefined) {
    const st = lstatSync(path);
    out[MODE] = st.mode;
    out[UID] = st.uid;
    out[GID] = st.gid;
    out[SIZE] = st.size;
    out[MTIME_MS] = st.mtimeMs;
    out[CTIME_MS] = st.ctimeMs;
    out[NLINK] = st.nlink;
    out[INO] = st.ino;
    out[DEV] = st.dev;
    out[RDEV] = st.rdev;
    out[BLOCKS] = st.blocks;
    return out;
  }
  // The binding's layout (node_file.h's FillStatsArray): dev, mode, nlink, uid, gid, rdev,
  // blksize, ino, size, blocks, then seconds and nanoseconds of atime, mtime, ctime, birthtime.
  out[MODE] = raw[1]!;
  out[UID] = raw[3]!;
  out[GID] = raw[4]!;
  out[SIZE] = raw[8]!;
  out[MTIME_MS] = msFromTimeSpec(raw[12]!, raw[13]!);
  out[CTIME_MS] = msFromTimeSpec(raw[14]!, raw[15]!);
  out[NLINK] = raw[2]!;
  out[INO] = raw[7]!;
  out[DEV] = raw[0]!;
  out[RDEV] = raw[5]!;
  out[BLOCKS] = raw[9]!;
  return out;
}

/** Node's own conversion (lib/internal/fs/utils.js): the same float, so stat keys stay equal. */
function msFromTimeSpec(sec: number, nsec: number): number {
  return sec * 1e3 + nsec / 1e6;
}

/**
 * The binding's lstat when it is there and gives, for a path whose lstat is known, exactly what
 * fs.lstatSync gives; otherwise undefined (another Node version, or the permission model, which
 * the binding would not consult as lstatSync does).
 */
function checkedBindingLstat(): BindingLstat | undefined {
  try {
    if ((process as { permission?: unknown }).permission !== undefined) return undefined;
    // process.binding is deprecated (DEP0111): where Node would print that, do without it.
    if (process.env.NODE_PENDING_DEPRECATION === '1' || `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`.includes('--pending-deprecation')) return undefined;
    const binding = (process as unknown as { binding(name: string): { lstat?: unknown } }).binding('fs');
    if (typeof binding.lstat !== 'function') return undefined;
    const lstat = binding.lstat.bind(binding) as BindingLstat;
    const probe = process.execPath;
    const raw = lstat(probe, false, undefined, true);
    const st = lstatSync(probe);
    if (!(raw instanceof Float64Array) || raw.length < 18) return undefined;
    const same =
      raw[0] === st.dev && raw[1] === st.mode && raw[2] === st.nlink && raw[3] === st.uid && raw[4] === st.gid && raw[5] === st.rdev &&
      raw[7] === st.ino && raw[8] === st.size && raw[9] === st.blocks &&
      msFromTimeSpec(raw[12]!, raw[13]!) === st.mtimeMs && msFromTimeSpec(raw[14]!, raw[15]!) === st.ctimeMs;
    return same ? lstat : undefined;
  } catch {
    return undefined;
  }
}

/** Checked on first use (null until then): commands that never walk a tree never touch it. */
let bindingLstat: BindingLstat | undefined | null = null;

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO } = constants;

/**
 * An lstat's numbers as an object with Stats' names and type tests, without Stats' four Dates:
 * for the thousands of files an incremental COPY hands to its layer's walk (see lstatEntry).
 */
export class LstatEntry {
  readonly dev: number;
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  readonly blocks: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;

  constructor(n: LstatNumbers) {
    this.dev = n[DEV]!;
    this.ino = n[INO]!;
    this.mode = n[MODE]!;
    this.nlink = n[NLINK]!;
    this.uid = n[UID]!;
    this.gid = n[GID]!;
    this.rdev = n[RDEV]!;
    this.size = n[SIZE]!;
    this.blocks = n[BLOCKS]!;
    this.mtimeMs = n[MTIME_MS]!;
    this.ctimeMs = n[CTIME_MS]!;
  }

  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFCHR;
  }
  isBlockDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFBLK;
  }
  isFIFO(): boolean {
    return (this.mode & S_IFMT) === S_IFIFO;
  }
}

/** lstatNumbers of `path` as an LstatEntry; undefined where it is not there (ENOENT, ENOTDIR), as lstatSync's throwIfNoEntry: false. */
export function lstatEntry(path: string): LstatEntry | undefined {
  try {
    return new LstatEntry(lstatNumbers(path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

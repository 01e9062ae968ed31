// An lstat that returns only the numbers a walk reads, in one reused array: a walk keeps them in
// small entry objects, not in the Stats fs.lstatSync makes (with four Dates each in Node 20).

import { lstatSync } from 'node:fs';

/** The fields a walk reads, at these indexes of what lstatNumbers returns. */
export const MODE = 0;
export const UID = 1;
export const GID = 2;
export const SIZE = 3;
export const MTIME_MS = 4;
export const CTIME_MS = 5;
export const NLINK = 6;
export const INO = 7;
const FIELDS = 8;

/** What lstatNumbers returns: overwritten by the next call, so read at once. */
export type LstatNumbers = Readonly<Float64Array>;

const out = new Float64Array(FIELDS);

/**
 * lstat(2) of `path`: mode, uid, gid, size, mtimeMs, ctimeMs, nlink and ino, equal to what
 * fs.lstatSync gives, thrown errors as fs.lstatSync throws them.
 */
export function lstatNumbers(path: string): LstatNumbers {
  const st = lstatSync(path);
  out[MODE] = st.mode;
  out[UID] = st.uid;
  out[GID] = st.gid;
  out[SIZE] = st.size;
  out[MTIME_MS] = st.mtimeMs;
  out[CTIME_MS] = st.ctimeMs;
  out[NLINK] = st.nlink;
  out[INO] = st.ino;
  return out;
}

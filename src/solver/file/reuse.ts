// Incremental COPY: a COPY that missed the cache but ran before on the same parent snapshot
// re-uses the files of that earlier result which came from source files that have not changed
// since (same path, stat key, mode and owner), instead of copying their bytes again.
//
// Snapshots are immutable once committed, so the new snapshot gets hard links to the earlier
// snapshot's files. That is safe because nothing writes a committed snapshot's files in place:
// overlayfs only reads lower dirs (a write copies the file up first), the native snapshotter
// copies a parent's tree before changing it, and COPY itself replaces a file (unlink, then
// create) rather than rewriting it. Within this copy, a linked file is never touched again: its
// mode, owner and times are already what a fresh copy would give it (they are part of the match).
//
// A hard link cannot cross the snapshot's mount, so the copy runs as usual through the mount but
// skips the re-usable files: it only creates and removes a probe file once in each of their
// directories, so that overlayfs copies those up as a real copy would. Once the snapshot is
// unmounted, each such file is linked to the earlier one in the snapshot's own directory (in
// overlayfs' upper dir a file hides whatever the parent had at its path, as the whiteout and the
// file a real copy leaves there would; the native tree's copy of it is removed first), and the
// parent directories get their times back. The resulting tree, and so
// its layer, is the one a fresh copy makes.

import type { Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { linkSync, lstatSync, realpathSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { childPath } from '../../snapshotter/fsutil.js';
import type { Owner } from './copy.js';
import { racyStatKey, type StatKeyFields } from '../../util/select.js';
import { lstatEntry, type LstatEntry } from '../../util/lstat-numbers.js';
import { CopiedFiles } from '../../cache/copy-record.js';

/**
 * A file left for later, with what a fresh copy would have written there. Only the source's
 * size and mtime are kept of its lstat: a large context defers thousands of files, and a whole
 * Stats (with its four Dates) each made the garbage collector copy megabytes more.
 */
interface Deferred {
  /** Path below the snapshot's root, as resolved in the mounted tree. */
  rel: string;
  src: string;
  size: number;
  mtimeMs: number;
  owner: Owner;
  mode: number;
}

/** How copySources writes a regular file; used again when an earlier file cannot be linked. */
export type FileWriter = (src: string, st: Stats, dest: string, owner: Owner, mode: number) => void;

export class CopyReuse {
  /** What this copy wrote, with where each file came from. */
  readonly written = new CopiedFiles();
  private readonly deferred: Deferred[] = [];
  /** Host directories (in the mounted tree) that hold deferred files, probed once each. */
  private readonly probed = new Set<string>();

  /**
   * `earlier`: the directory of the earlier result's snapshot (overlay: its diff; native: its
   * tree) and the files it wrote; none when there is no earlier result to use.
   * `now`: the clock reads are compared with (see racyStatKey); tests move it.
   */
  constructor(
    private readonly earlier?: { dir: string; files: CopiedFiles },
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Told by the copy of each directory it made (at `hostPath` in the mounted tree): that one is
   * the snapshot's own already (overlayfs made it in the upper dir), so it needs no probe.
   */
  made(hostPath: string): void {
    this.probed.add(hostPath);
  }

  /**
   * Called by the copy for a regular file it is about to write at `hostPath` (`rel` below the
   * root); true when the file is left for finish() to link (the path is left as it is until then).
   */
  defer(rel: string, hostPath: string, src: { rel: string; abs: string } & StatKeyFields, owner: Owner, mode: number): boolean {
    // A source changed just before this copy could change again within its timestamp's tick and
    // keep its stat key: it is recorded so that it never matches, and it is copied again.
    this.written.add(rel, src.rel, src, mode, owner, racyStatKey(src, this.now()));
    const files = this.earlier?.files;
    const i = files ? files.indexOf(rel) : -1;
    if (i < 0 || !files!.matches(i, src.rel, src, mode, owner)) return false;
    const dir = dirname(hostPath);
    if (!this.probed.has(dir)) {
      const probe = join(dir, `.builder-probe-${randomBytes(6).toString('hex')}`);
      writeFileSync(probe, '', { flag: 'wx' });
      unlinkSync(probe);
      this.probed.add(dir);
    }
    this.deferred.push({ rel, src: src.abs, size: src.size, mtimeMs: src.mtimeMs, owner, mode });
    return true;
  }

  /**
   * Once the snapshot is unmounted, links the deferred files in its directory `dir` to the
   * earlier ones (replacing the whiteout a cleared path may have left); a file that is not there
   * as expected is copied from its source by `write` instead. Parent directories keep the times
   * the copy gave them. Returns the paths linked, each with the lstat of the earlier file taken
   * just before it was linked (the same inode, so the same type, mode, owner, size and mtime; only
   * its link count and ctime moved): their content is the earlier file's. An LstatEntry, not a
   * Stats: the layer's walk reads only its numbers, and thousands of Stats, with four Dates each,
   * kept until then made the garbage collector copy megabytes.
   */
  finish(dir: string, write: FileWriter): Map<string, LstatEntry> {
    const linked = new Map<string, LstatEntry>();
    if (this.deferred.length === 0) return linked;
    const earlierRoot = this.earlier ? realpathOrUndefined(this.earlier.dir) : undefined;
    const parentTimes = new Map<string, Stats>();
    const safeParents = new Map<string, boolean>();
    for (const d of this.deferred) {
      const path = childPath(dir, d.rel);
      const parent = dirname(path);
      if (!parentTimes.has(parent)) parentTimes.set(parent, lstatSync(parent));
      const earlier = earlierRoot !== undefined ? linkable(earlierRoot, d, safeParents) : undefined;
      if (earlier !== undefined && linkReplacing(earlier.path, path)) linked.set(d.rel, earlier.st);
      else {
        rmSync(path, { recursive: true, force: true });
        write(d.src, lstatSync(d.src), path, d.owner, d.mode);
      }
    }
    for (const [parent, st] of parentTimes) utimesSync(parent, st.atime, st.mtime);
    return linked;
  }
}

/**
 * The earlier file for `d` (and its lstat) when it is a regular file with the size, mode, owner
 * and mtime a fresh copy gives it, reached without a symlink (its parent resolves to itself
 * inside `root`).
 */
function linkable(root: string, d: Deferred, safeParents: Map<string, boolean>): { path: string; st: LstatEntry } | undefined {
  const path = childPath(root, d.rel);
  if (!reachedWithoutSymlink(root, dirname(path), safeParents)) return undefined;
  const st = lstatEntry(path);
  if (!st) return undefined;
  const same =
    st.isFile() &&
    st.size === d.size &&
    (st.mode & 0o7777) === d.mode &&
    st.uid === d.owner.uid &&
    st.gid === d.owner.gid &&
    Math.abs(st.mtimeMs - d.mtimeMs) < 1;
  return same ? { path, st } : undefined;
}

/**
 * Whether `dir` lies inside `root` (a real path) with no symlink on the way: every directory
 * from `root` down is a directory itself. One lstat per directory, remembered in `known`, where
 * a realpath of each would read every component of its path again.
 */
function reachedWithoutSymlink(root: string, dir: string, known: Map<string, boolean>): boolean {
  if (dir === root) return true;
  let safe = known.get(dir);
  if (safe === undefined) {
    safe = dir.startsWith(`${root}/`) && reachedWithoutSymlink(root, dirname(dir), known) && lstatSync(dir, { throwIfNoEntry: false })?.isDirectory() === true;
    known.set(dir, safe);
  }
  return safe;
}

function realpathOrUndefined(path: string): string | undefined {
  try {
    // One realpath(3) call: the JS version lstats each component of the path in turn.
    return realpathSync.native(path);
  } catch {
    return undefined;
  }
}

/**
 * Links `path` to `earlier`, replacing what the parent snapshot has there (native: its copy of
 * the tree; overlay: nothing, or a whiteout); false when `earlier` went meanwhile (its snapshot
 * was removed). Most paths are free: the link is tried before anything is removed.
 */
function linkReplacing(earlier: string, path: string): boolean {
  for (let attempt = 0; ; attempt++) {
    try {
      linkSync(earlier, path);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return false;
      if (code !== 'EEXIST' || attempt > 0) throw err;
      rmSync(path, { recursive: true, force: true });
    }
  }
}

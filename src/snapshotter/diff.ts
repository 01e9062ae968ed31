// Turning an active snapshot's changes into a deterministic OCI layer in the content store: an
// uncompressed tar, as BuildKit keeps layers until they leave the machine (compression happens
// when an image is pushed or exported: see exporter/compress.ts). The walk and the tar packing
// are synchronous and fill 1 MiB blocks; each block is hashed (the diffID, which is also the
// blob's digest) and written at its offset on the thread pool while the next one fills.
//
// Determinism: entries in tree order with siblings sorted bytewise (parents always precede
// their children), numeric uid/gid with empty user/group names, no atime/ctime, integer mtimes
// clamped to SOURCE_DATE_EPOCH when given, PAX only where ustar cannot hold a value.

import type { Stats } from 'node:fs';
import { closeSync, ftruncateSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, write } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { ContentStore } from '../cache/content-store.js';
import { TAR_BLOCK_SIZE } from '../oci/layer.js';
import { MediaType, type Digest } from '../oci/types.js';
import {
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
  breather,
  dataRanges,
  devMajor,
  devMinor,
  errno,
  isOpaqueDirSync,
  type EntryStat,
  isOverlayWhiteout,
  lstatOrUndefinedSync,
  readUpperDirXattrsSync,
  readXattrsSync,
  UsageCounter,
  childPath,
  writeSparseSync,
  xattrsEqual,
} from './fsutil.js';
import { compareBytes } from '../util/select.js';
import type { SnapshotLayout } from './store.js';
import type { Usage } from './types.js';
import { EarlierLayerReader, type EarlierLayer, type IndexedEntry, type LayerIndex } from './layer-splice.js';
import { TarPacker, entryHeader, padding, type TarEntry } from './tar-writer.js';

export interface WriteLayerOptions {
  /** SOURCE_DATE_EPOCH (seconds): later mtimes are clamped to it; whiteouts get it. */
  sourceDateEpoch?: number;
  /** A layer holding the content of some of the files already (see layer-splice.ts). */
  earlier?: EarlierLayer;
  /** Also return where each regular file's content lies in the new layer (WrittenLayer.index). */
  index?: boolean;
}

export interface WrittenLayer {
  /** The tar's digest, which is also the stored blob's: layers are stored uncompressed. */
  diffID: Digest;
  digest: Digest;
  size: number;
  mediaType: typeof MediaType.OciLayer;
  /** No changes: the layer is the empty tar (still stored: BuildKit keeps such layers in images). */
  empty: boolean;
  /** Where each regular file's content lies, when asked for (WriteLayerOptions.index). */
  index?: LayerIndex;
  /**
   * overlayfs: the snapshot's own disk use (its diff is all of it), counted on the walk that
   * found the changes, so the store need not walk it again to know its size.
   */
  usage?: Usage;
}

/** A change found by a walker, before it becomes tar entries. */
type Change =
  | {
      kind: 'entry';
      rel: string;
      path: string;
      st: EntryStat;
      /**
       * Undefined: not read, for a file whose lstat the caller knew (EarlierLayer.same); its
       * header is packed without xattrs and kept only if the earlier layer holds the same bytes.
       */
      xattrs: ReadonlyArray<readonly [string, Buffer]> | undefined;
    }
  | { kind: 'whiteout'; rel: string };

/**
 * Stores the changes of a snapshot (active, or committed; `layout` says where it lives, see
 * LocalSnapshotter.layout) against its parent as an uncompressed tar layer in `store`.
 * overlayfs: the upper dir is the diff (whiteout devices become `.wh.` entries, opaque dirs
 * `.wh..wh..opq`); native: the tree is compared with its parent's.
 */
export async function writeLayer(
  layout: SnapshotLayout,
  store: ContentStore,
  opts: WriteLayerOptions = {},
): Promise<WrittenLayer> {
  const epoch = opts.sourceDateEpoch;
  if (epoch !== undefined && !(Number.isInteger(epoch) && epoch >= 0)) throw new Error(`invalid sourceDateEpoch ${epoch}`);
  if (layout.kind === 'view') throw new Error(`cannot diff view snapshot ${JSON.stringify(layout.key)}`);
  const counter = layout.snapshotter === 'overlayfs' ? new UsageCounter() : undefined;
  counter?.count(lstatSync(layout.dir));

  const hash = createHash('sha256');
  let size = 0;
  let entries = 0;
  const index = opts.index ? new Map<string, IndexedEntry>() : undefined;
  const writer = await store.createWriter();
  const earlier = opts.earlier && EarlierLayerReader.open(store, opts.earlier);
  // The walk takes the lstats it is given only while the earlier layer can vouch for the headers.
  const known = earlier && opts.earlier?.same;
  const changes = counter ? upperChanges(layout.dir, '', layout.parents, [], counter, known) : treeChanges(layout.dir, layout.parents[0], '', []);
  const toEntry = tarEntryMaker(epoch);
  try {
    const packer = new TarPacker((block) => {
      hash.update(block);
      size += block.length;
      out.write(block);
    });
    const out = new BlockFileWriter(openSync(writer.path, 'w'), (block) => packer.recycle(block));
    try {
      const pause = breather();
      for (const change of changes) {
        let entry = toEntry(change);
        if (entry === undefined) continue;
        let head = entryHeader(entry);
        let content = earlier && entry.type === 'file' && entry.size > 0 ? earlier.contentOf(entry.name, head, entry.size) : undefined;
        if (change.kind === 'entry' && change.xattrs === undefined && content === undefined) {
          // Not the earlier layer's entry after all: packed from a fresh lstat and xattr read like any other.
          const st = lstatSync(change.path);
          entry = toEntry({ ...change, st, xattrs: readXattrsSync(change.path, st) });
          if (entry === undefined) continue;
          head = entryHeader(entry);
          content = earlier && entry.type === 'file' && entry.size > 0 ? earlier.contentOf(entry.name, head, entry.size) : undefined;
        }
        const at = packer.offset;
        packer.addWithHeader(entry, head, content);
        if (index && entry.type === 'file' && entry.size > 0) {
          index.set(entry.name, [at, packer.offset - padding(entry.size) - entry.size - at, entry.size]);
        }
        entries++;
        await (out.busy ? out.drain() : pause());
      }
      packer.finish();
    } finally {
      await out.close();
    }
  } catch (err) {
    await writer.abort();
    throw err;
  } finally {
    earlier?.close();
  }
  const diffID: Digest = `sha256:${hash.digest('hex')}`;
  await writer.commit(diffID);
  return { diffID, digest: diffID, size, mediaType: MediaType.OciLayer, empty: entries === 0, ...(index && { index }), ...(counter && { usage: counter.usage }) };
}

/**
 * Writes blocks to a file in order, each at its offset on the thread pool, a few at a time: the
 * event loop keeps packing while the disk catches up, and memory stays bounded. Zero runs are
 * skipped (the file is new), so a file with holes keeps them in the stored tar too; the tar's
 * bytes, and so its digest, are the same.
 */
class BlockFileWriter {
  private offset = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private error: unknown;

  constructor(
    private readonly fd: number,
    /** Told each block once it is written. */
    private readonly written: (block: Buffer) => void,
    private readonly limit = 4,
  ) {}

  get busy(): boolean {
    return this.inFlight.size >= this.limit;
  }

  write(block: Buffer): void {
    // Written at once: a small layer's only block (a thread-pool round trip would cost more than
    // the write), and any block beyond `limit` in flight (one big file packs many blocks in one
    // go, and they must not pile up in memory).
    if ((block.length < TAR_BLOCK_SIZE && this.inFlight.size === 0) || this.busy) {
      writeSparseSync(this.fd, block, this.offset);
      this.offset += block.length;
      this.written(block);
      return;
    }
    const p = this.writeAt(block, this.offset).then(
      () => this.written(block),
      (err: unknown) => void (this.error ??= err),
    );
    this.offset += block.length;
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  async drain(): Promise<void> {
    while (this.busy) await Promise.race(this.inFlight);
    if (this.error) throw this.error;
  }

  /** Waits for every write, sets the size (the tar ends in zeros), closes the file, and reports the first failure. */
  async close(): Promise<void> {
    await Promise.all(this.inFlight);
    try {
      if (!this.error) ftruncateSync(this.fd, this.offset);
    } finally {
      closeSync(this.fd);
    }
    if (this.error) throw this.error;
  }

  private async writeAt(block: Buffer, offset: number): Promise<void> {
    for (const [start, end] of dataRanges(block)) {
      for (let done = start; done < end; ) {
        done += await new Promise<number>((resolve, reject) =>
          write(this.fd, block, done, end - done, offset + done, (err, written) => (err ? reject(err) : resolve(written))),
        );
      }
    }
  }
}

// --- overlay: the upper dir is the diff --------------------------------------------------------
//
// The walks use synchronous calls: a few microseconds each, against a thread-pool round trip
// per call for the async API (which made a no-change native diff 15x slower). They are plain
// generators; writeLayer lets the event loop breathe between the entries it takes from them.

/**
 * Walks the upper dir. `lowers` are the lower-layer directories visible at `dir` (nearest
 * first). A directory that overlayfs only copied up (it exists below with the same owner,
 * mode and xattrs, e.g. because a mount-point stub was created and removed in it) is held back
 * like in the native walk and only emitted as the parent of a real change.
 */
function* upperChanges(
  dir: string,
  rel: string,
  lowers: readonly string[],
  pending: PendingDir[],
  usage: UsageCounter,
  known: ReadonlyMap<string, EntryStat> | undefined,
): Generator<Change> {
  const items = readdirSync(dir).map((name) => {
    const path = childPath(dir, name);
    const below = joinRel(rel, name);
    const knownSt = known?.get(below);
    const st = knownSt ?? lstatSync(path);
    usage.count(st);
    const whiteout = isOverlayWhiteout(st);
    return { name, path, st, known: knownSt !== undefined, out: whiteout ? WHITEOUT_PREFIX + name : name, rel: whiteout ? joinRel(rel, WHITEOUT_PREFIX + name) : below };
  });
  items.sort((a, b) => compareBytes(a.out, b.out));
  for (const it of items) {
    const r = it.rel;
    // Checked before anything else: the kernel hardlinks whiteouts to one shared inode.
    if (isOverlayWhiteout(it.st)) {
      if (unflushed(pending)) yield* flush(pending);
      yield { kind: 'whiteout', rel: r };
      continue;
    }
    if (it.known) {
      if (unflushed(pending)) yield* flush(pending);
      yield { kind: 'entry', rel: r, path: it.path, st: it.st, xattrs: undefined };
      continue;
    }
    if (!it.st.isDirectory()) {
      if (unflushed(pending)) yield* flush(pending);
      yield { kind: 'entry', rel: r, path: it.path, st: it.st, xattrs: readXattrsSync(it.path, it.st) };
      continue;
    }
    const { xattrs, opaque } = readUpperDirXattrsSync(it.path);
    const entry: Change = { kind: 'entry', rel: r, path: it.path, st: it.st, xattrs };
    const below = opaque ? { base: undefined, dirs: [] } : lowerDirs(lowers, it.name);
    const copiedUp =
      below.base !== undefined &&
      !attrsChanged(it.st, below.base.st) &&
      (it.st.mode & 0o7777) === (below.base.st.mode & 0o7777) &&
      xattrsEqual(xattrs, readXattrsSync(below.base.path, below.base.st));
    const self: PendingDir = { change: entry, emitted: false };
    if (!copiedUp) {
      if (unflushed(pending)) yield* flush(pending);
      yield entry;
      self.emitted = true;
      if (opaque) yield { kind: 'whiteout', rel: joinRel(r, WHITEOUT_OPAQUE) };
    }
    pending.push(self);
    yield* upperChanges(it.path, r, below.dirs, pending, usage, known);
    pending.pop();
  }
}

/**
 * What the layers below show at `name` inside the directories `lowers`: the nearest directory
 * (`base`, if the nearest entry is a directory) and every lower directory merged into it.
 */
function lowerDirs(lowers: readonly string[], name: string): { base: { path: string; st: Stats } | undefined; dirs: string[] } {
  const dirs: string[] = [];
  let base: { path: string; st: Stats } | undefined;
  for (const lower of lowers) {
    const path = join(lower, name);
    const st = lstatOrUndefinedSync(path);
    if (!st) continue;
    if (!st.isDirectory()) break; // a whiteout or a file hides everything further down
    base ??= { path, st };
    dirs.push(path);
    if (isOpaqueDirSync(path)) break;
  }
  return { base, dirs };
}

// --- native: compare the full tree with its parent's ------------------------------------------

interface PendingDir {
  change: Change;
  emitted: boolean;
}

/**
 * Walks `upper` against `lower` (the parent's tree; undefined: everything is new). Directories
 * that did not change themselves are held back and emitted only before a changed descendant,
 * so the layer carries the parents of every change (as an overlay upper dir would).
 */
function* treeChanges(upper: string, lower: string | undefined, rel: string, pending: PendingDir[]): Generator<Change> {
  const names = new Set(readdirSync(upper));
  if (lower !== undefined) for (const n of readdirOrEmpty(lower)) names.add(n);
  const items = [...names].map((name) => {
    const up = join(upper, name);
    const low = lower === undefined ? undefined : join(lower, name);
    const a = lstatOrUndefinedSync(up);
    const b = low === undefined ? undefined : lstatOrUndefinedSync(low);
    return { up, low, a, b, out: a ? name : WHITEOUT_PREFIX + name };
  });
  items.sort((x, y) => compareBytes(x.out, y.out));

  for (const { up, low, a, b, out } of items) {
    const r = joinRel(rel, out);
    if (!a) {
      if (unflushed(pending)) yield* flush(pending);
      yield { kind: 'whiteout', rel: r };
      continue;
    }
    const xattrs = readXattrsSync(up, a);
    const entry: Change = { kind: 'entry', rel: r, path: up, st: a, xattrs };
    if (b && low !== undefined && a.isDirectory() && b.isDirectory()) {
      // Directory mtimes move with any child churn; emitted children pull their parents in anyway.
      const changed = attrsChanged(a, b) || (a.mode & 0o7777) !== (b.mode & 0o7777) || !xattrsEqual(xattrs, readXattrsSync(low, b));
      const self: PendingDir = { change: entry, emitted: false };
      if (changed) {
        if (unflushed(pending)) yield* flush(pending);
        yield entry;
        self.emitted = true;
      }
      pending.push(self);
      yield* treeChanges(up, low, r, pending);
      pending.pop();
      continue;
    }
    if (b && low !== undefined && !leafChanged(up, a, xattrs, low, b)) continue;
    if (unflushed(pending)) yield* flush(pending);
    yield entry;
    // New, or replacing a non-directory: everything below is an addition.
    if (a.isDirectory()) yield* treeChanges(up, undefined, r, []);
  }
}

/**
 * Whether a directory held back in `pending` still waits to be emitted. flush emits them all,
 * outermost first, and nothing is emitted without a flush, so the innermost one tells: a check
 * that allocates nothing, where starting a flush generator for every entry of a layer did.
 */
function unflushed(pending: readonly PendingDir[]): boolean {
  return pending.length > 0 && !pending[pending.length - 1]!.emitted;
}

function* flush(pending: PendingDir[]): Generator<Change> {
  for (const p of pending) {
    if (!p.emitted) {
      p.emitted = true;
      yield p.change;
    }
  }
}

function attrsChanged(a: Pick<Stats, 'uid' | 'gid'>, b: Pick<Stats, 'uid' | 'gid'>): boolean {
  return a.uid !== b.uid || a.gid !== b.gid;
}

function sameType(a: Stats, b: Stats): boolean {
  return (a.mode & 0o170000) === (b.mode & 0o170000);
}

/** Non-directory comparison: type, owner, mode, xattrs, target/device; files by size+mtime, then content. */
function leafChanged(up: string, a: Stats, xattrs: ReadonlyArray<readonly [string, Buffer]>, low: string, b: Stats): boolean {
  if (!sameType(a, b) || attrsChanged(a, b)) return true;
  if (a.isSymbolicLink()) return readlinkSync(up) !== readlinkSync(low);
  if ((a.mode & 0o7777) !== (b.mode & 0o7777)) return true;
  if (!xattrsEqual(xattrs, readXattrsSync(low, b))) return true;
  if (a.isCharacterDevice() || a.isBlockDevice()) return a.rdev !== b.rdev;
  if (!a.isFile()) return false;
  if (a.size !== b.size) return true;
  // Copies carry the parent's mtime to within a microsecond (utimes goes through a double).
  if (Math.abs(a.mtimeMs - b.mtimeMs) < 0.002) return false;
  return !sameContent(up, low);
}

function sameContent(p1: string, p2: string): boolean {
  const f1 = openSync(p1, 'r');
  try {
    const f2 = openSync(p2, 'r');
    try {
      const b1 = Buffer.allocUnsafe(64 * 1024);
      const b2 = Buffer.allocUnsafe(64 * 1024);
      for (;;) {
        const r1 = readSync(f1, b1, 0, b1.length, null);
        const r2 = readSync(f2, b2, 0, b2.length, null);
        if (r1 !== r2) return false;
        if (r1 === 0) return true;
        if (!b1.subarray(0, r1).equals(b2.subarray(0, r2))) return false;
      }
    } finally {
      closeSync(f2);
    }
  } finally {
    closeSync(f1);
  }
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return [];
    throw err;
  }
}

function joinRel(rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`;
}

// --- changes → tar entries ---------------------------------------------------------------------

/**
 * Makes the tar entry of each change, in walk order; undefined for what tar cannot hold. Files
 * seen before under another name (same inode) become hard links to that first name.
 */
function tarEntryMaker(epoch: number | undefined): (c: Change) => TarEntry | undefined {
  const clamp = (t: number): number => (epoch !== undefined && t > epoch ? epoch : t);
  // By device, then inode number: every file an incremental COPY linked has a second name (in the
  // earlier snapshot), and a key string for each was thousands of allocations per layer.
  const firstNameOfInode = new Map<number, Map<number, string>>();
  return (c) => {
    if (c.kind === 'whiteout') return { name: c.rel, type: 'file', mode: 0, uid: 0, gid: 0, mtime: epoch ?? 0, size: 0 };
    const { st } = c;
    const base = { name: c.rel, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: clamp(Math.floor(st.mtimeMs / 1000)), size: 0 };
    const xattrs = c.xattrs ?? [];
    if (st.isDirectory()) return { ...base, type: 'dir', xattrs };
    if (st.isFile()) {
      if (st.nlink > 1) {
        let onDevice = firstNameOfInode.get(st.dev);
        if (!onDevice) firstNameOfInode.set(st.dev, (onDevice = new Map()));
        // A change made again from a fresh lstat (see writeLayer) must not become a link to itself.
        const first = onDevice.get(st.ino);
        if (first !== undefined && first !== c.rel) return { ...base, type: 'link', linkname: first };
        onDevice.set(st.ino, c.rel);
      }
      // Spelt out, not spread from `base`: the common case, made once per file of a layer.
      return { name: c.rel, type: 'file', mode: base.mode, uid: base.uid, gid: base.gid, mtime: base.mtime, size: st.size, source: c.path, xattrs };
    }
    if (st.isSymbolicLink()) return { ...base, type: 'symlink', linkname: readlinkSync(c.path) };
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      const type = st.isCharacterDevice() ? 'char' : 'block';
      return { ...base, type, devmajor: devMajor(st.rdev), devminor: devMinor(st.rdev), xattrs };
    }
    if (st.isFIFO()) return { ...base, type: 'fifo', xattrs };
    return undefined; // sockets have no tar representation
  };
}

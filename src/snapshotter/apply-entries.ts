// Writing a layer's tar entries into a snapshot's directory (see apply.ts): entry kinds,
// whiteouts and opaque directories for both drivers, and every check that keeps a hostile
// layer inside the root. apply.ts is the entry point and layer-reader.ts reads the blob, so this
// file is only the tree. Over 500 lines because the Applier is one piece: its rules (overlay's
// merged view, native's touched paths, directory times) share the state of the tree they build.
//
// File system calls are synchronous on purpose: each is a few microseconds, while an async call
// costs a thread-pool round trip; entry after dependent entry, that made applying a 9k-file
// layer almost twice as slow. The event loop is still released between entries and chunks.
//
// Safety, containerd-style: absolute names are taken relative to the root; a name that climbs
// out through `..`, a parent directory that is a symlink (in this tree or, for overlay, in the
// merged view of the layers below), and a hardlink whose target leaves the root or crosses a
// symlink are all rejected with a LayerSecurityError naming the entry. We never follow a
// symlink while writing: existing non-directories are removed before anything is created.

import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  ftruncateSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  applyAttrsSync,
  copyFileKeepingHoles,
  devMajor,
  devMinor,
  mknod,
  readXattrsSync,
  OVERLAY_OPAQUE_XATTR,
  OVERLAY_XATTR_PREFIX,
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
  errno,
  isOpaqueDirSync,
  isOverlayWhiteout,
  lstatOrUndefinedSync,
  setAttributeSync,
  UsageCounter,
  writeSparseSync,
  writeXattrsSync,
} from './fsutil.js';
import type { EntryBody, LayerEntry } from './layer-reader.js';
import type { SnapshotLayout } from './store.js';
import type { Usage } from './types.js';

export class LayerSecurityError extends Error {
  /** The layer (digest or file) the entry came from, when known. */
  layer: string | undefined;

  constructor(readonly entry: string, readonly reason: string, layer?: string) {
    super(securityMessage(entry, reason, layer));
    this.name = 'LayerSecurityError';
    this.layer = layer;
  }

  /** Names the layer in the message (applyLayer knows it; the entry handlers do not). */
  withLayer(layer: string | undefined): this {
    if (layer !== undefined && this.layer === undefined) {
      this.layer = layer;
      this.message = securityMessage(this.entry, this.reason, layer);
    }
    return this;
  }
}

function securityMessage(entry: string, reason: string, layer: string | undefined): string {
  return `${layer !== undefined ? `layer ${layer}: ` : ''}refusing layer entry ${JSON.stringify(entry)}: ${reason}`;
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

function joinRel(rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`;
}

/**
 * Lexically cleans a tar name to a path relative to the root. A leading `/` is dropped (tar
 * names are relative to the root); `..` that would climb above the root is an attack.
 */
export function cleanEntryPath(name: string, entry: string = name, what = 'path'): string {
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.length === 0) throw new LayerSecurityError(entry, `${what} ${JSON.stringify(name)} escapes the root through ".."`);
      parts.pop();
      continue;
    }
    parts.push(c);
  }
  return parts.join('/');
}

/**
 * What an Applier knows of the tree it is writing, as plain data: another Applier (on the writer
 * thread) given it goes on with the layer's next entry exactly as the first would have.
 */
export interface AppliedState {
  dirs: string[];
  touched: string[];
  opaqueDirs: string[];
  dirTimes: Array<[string, number]>;
  /** The disk use counted so far and the paths left to count at the end; none once uncounted. */
  counted: { inodes: number[]; size: number; atFinish: string[] } | undefined;
  whiteoutTemplate: string | undefined;
}

interface DirAttrs {
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
}

export class Applier {
  private readonly root: string;
  private readonly lowers: string[];
  private readonly overlay: boolean;
  /** Paths (relative) known to be real directories in the tree we write. */
  private readonly dirs = new Set<string>(['']);
  /** native: paths this layer wrote, with all their ancestors (for opaque dirs). */
  private readonly touched = new Set<string>();
  /** overlay: dirs this layer made opaque; they hide the layers below. */
  private readonly opaqueDirs = new Set<string>();
  /** overlay: for a dir, the lower layers (indexes) through which it is visible. */
  private visibleMemo = new Map<string, number[]>();
  /** Directory times are set last: creating children changes them. */
  private readonly dirTimes = new Map<string, number>();
  private whiteoutTemplate: string | undefined;
  /**
   * The tree's disk use, counted as it is written, so that nobody walks the tree to know it:
   * files from the fstat done anyway, other inodes (and files with xattrs, which can take a
   * block of their own) by one lstat each at the end. Dropped (undefined) as soon as anything
   * is removed or replaced, or when the tree did not start empty (native, on a parent).
   */
  private counter: UsageCounter | undefined;
  private readonly countAtFinish = new Set<string>();
  private counted: Usage | undefined;

  /**
   * `makeNode` creates device nodes and fifos (fsutil's mknod, unless the caller has a better
   * way: a writer thread asks its parent, whose syscall server is already running).
   * `from` is the state another Applier handed over (handOver) after writing the layer's first
   * entries into the same tree.
   */
  constructor(
    private readonly layout: SnapshotLayout,
    private readonly warn: (message: string) => void,
    private readonly makeNode: typeof mknod = mknod,
    from?: AppliedState,
  ) {
    this.root = layout.dir;
    this.overlay = layout.snapshotter === 'overlayfs';
    this.lowers = this.overlay ? layout.parents : [];
    this.visibleMemo.set('', this.lowers.map((_, i) => i));
    if (!from) {
      if (this.overlay || layout.parents.length === 0) this.counter = new UsageCounter();
      return;
    }
    for (const d of from.dirs) this.dirs.add(d);
    for (const t of from.touched) this.touched.add(t);
    for (const o of from.opaqueDirs) this.opaqueDirs.add(o);
    for (const [abs, mtime] of from.dirTimes) this.dirTimes.set(abs, mtime);
    if (from.counted) {
      this.counter = UsageCounter.restore(from.counted);
      for (const abs of from.counted.atFinish) this.countAtFinish.add(abs);
    }
    this.whiteoutTemplate = from.whiteoutTemplate;
  }

  /**
   * Everything needed to go on with the next entry elsewhere (see AppliedState). This Applier is
   * done then: the receiver sets the directory times, counts, and removes the whiteout template.
   */
  handOver(): AppliedState {
    const state: AppliedState = {
      dirs: [...this.dirs],
      touched: [...this.touched],
      opaqueDirs: [...this.opaqueDirs],
      dirTimes: [...this.dirTimes],
      counted: this.counter ? { ...this.counter.save(), atFinish: [...this.countAtFinish] } : undefined,
      whiteoutTemplate: this.whiteoutTemplate,
    };
    this.whiteoutTemplate = undefined;
    return state;
  }

  /** The tree's disk use (as diskUsage would find it) once finished, when it could be counted on the way. */
  usage(): Usage | undefined {
    return this.counted;
  }

  private countLater(abs: string): void {
    if (this.counter) this.countAtFinish.add(abs);
  }

  private uncounted(): void {
    this.counter = undefined;
    this.countAtFinish.clear();
  }

  async apply(h: LayerEntry, body: EntryBody): Promise<void> {
    const name = h.name;
    const rel = cleanEntryPath(name);
    if (rel === '') {
      // The root itself ("./"): containerd leaves it alone too.
      await drain(body);
      return;
    }
    const parent = parentOf(rel);
    const base = rel.slice(parent === '' ? 0 : parent.length + 1);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      await drain(body);
      if (base === WHITEOUT_OPAQUE) {
        // overlayfs always merges the layers' root directories, whatever their opaque xattr (and
        // so does containerd's overlay applier): a root-level marker hides nothing, in either driver.
        if (parent === '' || (this.overlay && this.lowers.length === 0)) return;
        return this.opaque(parent, name);
      }
      if (base.startsWith(WHITEOUT_PREFIX + WHITEOUT_PREFIX)) {
        this.warn(`skipped ${name}: unsupported whiteout metadata entry`);
        return;
      }
      const target = base.slice(WHITEOUT_PREFIX.length);
      if (target === '.' || target === '..') throw new LayerSecurityError(name, 'whiteout of "." or ".."');
      // In the bottom layer there is nothing to hide (and a bind-mounted view would show the devices).
      if (this.overlay && this.lowers.length === 0) return;
      return this.whiteout(joinRel(parent, target), name);
    }

    switch (h.type) {
      case 'directory':
        await drain(body);
        return this.directory(rel, name, h);
      case 'file':
      case 'contiguous-file':
        return this.file(rel, name, h, body);
      case 'symlink':
        await drain(body);
        return this.symlink(rel, name, h);
      case 'link':
        await drain(body);
        return this.hardlink(rel, name, h);
      case 'character-device':
      case 'block-device':
      case 'fifo':
        await drain(body);
        return this.special(rel, name, h);
      default:
        await drain(body);
        this.warn(`skipped ${name}: unsupported tar entry type ${String(h.type)}`);
    }
  }

  async finish(): Promise<void> {
    for (const [abs, mtime] of this.dirTimes) utimesSync(abs, mtime, mtime);
    if (this.counter) {
      this.counter.count(lstatSync(this.root));
      for (const abs of this.countAtFinish) this.counter.count(lstatSync(abs));
      this.counted = this.counter.usage;
    }
    await this.cleanup();
  }

  async cleanup(): Promise<void> {
    if (this.whiteoutTemplate) rmSync(this.whiteoutTemplate, { force: true });
    this.whiteoutTemplate = undefined;
  }

  // --- entry kinds ---------------------------------------------------------------------------

  private async directory(rel: string, name: string, h: LayerEntry): Promise<void> {
    const abs = await this.prepareTarget(rel, name, true);
    this.countLater(abs);
    this.setAttrs(abs, h);
    this.dirTimes.set(abs, h.mtime);
  }

  private async file(rel: string, name: string, h: LayerEntry, body: EntryBody): Promise<void> {
    // 'wx' = O_CREAT|O_EXCL: never opens through a symlink planted at this name.
    const mode = (h.mode ?? 0o644) & 0o7777;
    const fd = await this.create(rel, name, (abs) => openSync(abs, 'wx', mode));
    try {
      // Runs of zeros become holes: a huge, mostly empty file costs its data, not its size.
      let pos = 0;
      let written = 0;
      for await (const chunk of body) {
        const buf = chunk as Uint8Array;
        written = writeSparseSync(fd, buf, pos);
        pos += buf.length;
      }
      // Only a file that ends in a hole is shorter than its size.
      if (written < pos) ftruncateSync(fd, pos);
      // Owner, then mode (chown clears setuid bits), as setAttrs, but through the descriptor and
      // only where the new file differs: each change is a journalled inode update, and most files
      // of a layer are created as root with their final mode already.
      const st = fstatSync(fd);
      const chown = st.uid !== (h.uid ?? 0) || st.gid !== (h.gid ?? 0);
      if (chown) fchownSync(fd, h.uid ?? 0, h.gid ?? 0);
      if (chown || (st.mode & 0o7777) !== mode) fchmodSync(fd, mode);
      const xattrs = this.xattrsOf(h);
      if (xattrs.length > 0) {
        const abs = join(this.root, rel);
        writeXattrsSync(abs, xattrs);
        this.countLater(abs);
      } else {
        this.counter?.count(st);
      }
      futimesSync(fd, h.mtime, h.mtime);
    } finally {
      closeSync(fd);
    }
  }

  private async symlink(rel: string, name: string, h: LayerEntry): Promise<void> {
    const abs = await this.create(rel, name, (path) => {
      symlinkSync(h.linkname ?? '', path);
      return path;
    });
    this.countLater(abs);
    lchownSync(abs, h.uid ?? 0, h.gid ?? 0);
    lutimesSync(abs, h.mtime, h.mtime);
  }

  private async hardlink(rel: string, name: string, h: LayerEntry): Promise<void> {
    const target = cleanEntryPath(h.linkname ?? '', name, 'hardlink target');
    if (target === '') throw new LayerSecurityError(name, 'hardlink to the root');
    if (target === rel) {
      this.warn(`skipped ${name}: hardlink to itself`);
      return;
    }
    // The target must already be in the tree, reached through real directories only. With
    // overlay, a target from a lower layer is first copied up into this layer (as overlayfs
    // itself does when a file is linked through the merged view).
    const targetAbs = this.overlay ? await this.existingOrCopiedUp(target, name) : await this.existingInTree(target, name);
    await this.create(rel, name, (abs) => linkSync(targetAbs, abs));
  }

  private async special(rel: string, name: string, h: LayerEntry): Promise<void> {
    const abs = await this.prepareTarget(rel, name, false);
    const kind = h.type === 'fifo' ? 'p' : h.type === 'block-device' ? 'b' : 'c';
    try {
      await this.makeNode(abs, kind, h.devmajor ?? 0, h.devminor ?? 0);
    } catch (err) {
      this.warn(`skipped ${name}: cannot create ${h.type} (${(err as Error).message})`);
      return;
    }
    this.countLater(abs);
    this.setAttrs(abs, h);
    utimesSync(abs, h.mtime, h.mtime);
  }

  private async whiteout(rel: string, name: string): Promise<void> {
    this.uncounted();
    if (this.overlay) {
      await this.ensureDir(parentOf(rel), name, true);
      const abs = join(this.root, rel);
      const st = lstatOrUndefinedSync(abs);
      // Whiteouts only hide lower layers. Something this layer wrote there already hides them,
      // except a directory, whose lower contents still show through unless it is opaque.
      if (st?.isDirectory()) await this.markOpaque(rel, abs);
      // Only where a lower layer shows something: a redundant whiteout in a directory that is
      // not merged (an opaque one) would be listed as a device by overlayfs.
      else if (!st && (await this.lowerLookup(rel)) !== undefined) await this.makeWhiteout(abs);
      return;
    }
    if (!(await this.ensureDir(parentOf(rel), name, false))) return;
    const abs = join(this.root, rel);
    const st = lstatOrUndefinedSync(abs);
    if (!st) return;
    if (this.touched.has(rel)) {
      if (st.isDirectory()) await this.removeUntouched(rel);
      return;
    }
    rmSync(abs, { recursive: true, force: true });
    if (st.isDirectory()) this.forgetDirs(rel);
  }

  private async opaque(dirRel: string, name: string): Promise<void> {
    this.uncounted();
    if (this.overlay) {
      await this.ensureDir(dirRel, name, true);
      await this.markOpaque(dirRel, join(this.root, dirRel));
      return;
    }
    if (await this.ensureDir(dirRel, name, false)) await this.removeUntouched(dirRel);
  }

  // --- the tree ------------------------------------------------------------------------------

  /**
   * Makes `rel` ready to be created: its parent is a real directory and nothing but a directory
   * (kept when `isDir`) is left at the name. Returns the absolute path.
   */
  private async prepareTarget(rel: string, name: string, isDir: boolean): Promise<string> {
    await this.ensureDir(parentOf(rel), name, true);
    const abs = join(this.root, rel);
    const st = lstatOrUndefinedSync(abs);
    let hideLower = false;
    if (st) {
      if (isDir && st.isDirectory()) {
        this.dirs.add(rel);
        this.touch(rel);
        return abs;
      }
      // A directory replacing a whiteout of this same layer must hide what is below it.
      hideLower = this.overlay && isOverlayWhiteout(st);
      this.uncounted();
      rmSync(abs, { recursive: true, force: true });
      if (st.isDirectory()) this.forgetDirs(rel);
    }
    if (isDir) {
      mkdirSync(abs, { mode: 0o700 });
      if (hideLower) await this.markOpaque(rel, abs);
      this.dirs.add(rel);
    }
    this.touch(rel);
    return abs;
  }

  /**
   * Creates non-directory `rel` with `make(abs)`, which must fail with EEXIST rather than follow
   * or reuse whatever is at the name. Most names of a layer are new: only when one is taken is it
   * looked at and cleared (prepareTarget) before the second attempt.
   */
  private async create<T>(rel: string, name: string, make: (abs: string) => T): Promise<T> {
    await this.ensureDir(parentOf(rel), name, true);
    const abs = join(this.root, rel);
    try {
      const made = make(abs);
      this.touch(rel);
      return made;
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err;
    }
    return make(await this.prepareTarget(rel, name, false));
  }

  /**
   * Ensures `rel` is a real directory in the tree we write, creating it (and its parents) when
   * `create`; returns whether it exists. A symlink or non-directory on the way is an attack
   * (or at least a layer we cannot apply faithfully without following links).
   */
  private async ensureDir(rel: string, name: string, create: boolean): Promise<boolean> {
    if (this.dirs.has(rel)) return true;
    if (!(await this.ensureDir(parentOf(rel), name, create))) return false;
    const abs = join(this.root, rel);
    const st = lstatOrUndefinedSync(abs);
    if (st?.isDirectory()) {
      this.dirs.add(rel);
      return true;
    }
    if (st?.isSymbolicLink()) throw new LayerSecurityError(name, `parent directory ${JSON.stringify(rel)} is a symlink`);
    const whitedOut = st !== undefined && this.overlay && isOverlayWhiteout(st);
    if (st && !whitedOut) throw new LayerSecurityError(name, `parent ${JSON.stringify(rel)} is not a directory`);

    let lower: Stats | undefined;
    if (this.overlay && !whitedOut) {
      const below = await this.lowerLookup(rel);
      if (below === 'symlink') throw new LayerSecurityError(name, `parent directory ${JSON.stringify(rel)} is a symlink in a lower layer`);
      if (below === 'other') throw new LayerSecurityError(name, `parent ${JSON.stringify(rel)} is not a directory in a lower layer`);
      lower = below;
    }
    if (!create) return false;
    if (whitedOut) {
      this.uncounted();
      unlinkSync(abs);
    }
    mkdirSync(abs, { mode: 0o700 });
    this.countLater(abs);
    // An implicit parent takes the attributes of the directory it covers, so the merged view
    // does not change them; a brand-new one gets Docker's default 0755 root:root.
    const attrs: DirAttrs = lower
      ? { uid: lower.uid, gid: lower.gid, mode: lower.mode & 0o7777, mtime: lower.mtimeMs / 1000 }
      : { uid: 0, gid: 0, mode: 0o755, mtime: Date.now() / 1000 };
    lchownSync(abs, attrs.uid, attrs.gid);
    chmodSync(abs, attrs.mode);
    if (whitedOut) await this.markOpaque(rel, abs);
    if (lower) this.dirTimes.set(abs, attrs.mtime);
    this.dirs.add(rel);
    this.touch(rel);
    return true;
  }

  /**
   * The parents of hardlink target `rel` not yet known to be directories of this tree, each
   * with what this tree has there; a symlink on the way is refused.
   */
  private *unknownParents(rel: string, name: string): Generator<{ cur: string; st: Stats | undefined }> {
    let cur = '';
    for (const c of parentOf(rel).split('/').filter(Boolean)) {
      cur = joinRel(cur, c);
      if (this.dirs.has(cur)) continue;
      const st = lstatOrUndefinedSync(join(this.root, cur));
      if (st?.isSymbolicLink()) throw new LayerSecurityError(name, `hardlink target crosses symlink ${JSON.stringify(cur)}`);
      yield { cur, st };
    }
  }

  /** Resolves an existing non-directory of this tree, refusing symlinked parents. */
  private async existingInTree(rel: string, name: string): Promise<string> {
    for (const { st } of this.unknownParents(rel, name)) {
      if (!st?.isDirectory()) throw new LayerSecurityError(name, `hardlink target ${JSON.stringify(rel)} does not exist in this layer`);
    }
    const abs = join(this.root, rel);
    const st = lstatOrUndefinedSync(abs);
    if (!st || (this.overlay && isOverlayWhiteout(st))) {
      throw new LayerSecurityError(name, `hardlink target ${JSON.stringify(rel)} does not exist in this layer`);
    }
    if (st.isDirectory()) throw new LayerSecurityError(name, `hardlink target ${JSON.stringify(rel)} is a directory`);
    return abs;
  }

  /**
   * overlay: the upper-dir path of non-directory `rel` as the merged view shows it, copying it up
   * from the nearest lower layer that has it. Every directory on the way must be a real
   * directory in the merged view (symlinks are refused, whiteouts end the lookup).
   */
  private async existingOrCopiedUp(rel: string, name: string): Promise<string> {
    const missing = (): LayerSecurityError => new LayerSecurityError(name, `hardlink target ${JSON.stringify(rel)} does not exist`);
    for (const { cur, st } of this.unknownParents(rel, name)) {
      if (st?.isDirectory()) continue;
      if (st) throw missing(); // a whiteout or a file of this layer hides the lower dirs
      const below = await this.lowerLookup(cur);
      if (below === 'symlink') throw new LayerSecurityError(name, `hardlink target crosses symlink ${JSON.stringify(cur)} of a lower layer`);
      if (below === undefined || below === 'other') throw missing();
    }
    const abs = join(this.root, rel);
    const st = lstatOrUndefinedSync(abs);
    if (st && isOverlayWhiteout(st)) throw missing();
    if (st?.isDirectory()) throw new LayerSecurityError(name, `hardlink target ${JSON.stringify(rel)} is a directory`);
    if (st) return abs;
    // Not in this layer: find it below (its parents were checked above) and copy it up.
    const lower = (await this.visibleLowers(parentOf(rel)))
      .map((i) => join(this.lowers[i]!, rel))
      .map((path) => ({ path, st: lstatOrUndefinedSync(path) }))
      .find((x) => x.st !== undefined);
    if (!lower?.st || isOverlayWhiteout(lower.st)) throw missing();
    if (lower.st.isDirectory()) throw new LayerSecurityError(name, `hardlink target ${JSON.stringify(rel)} is a directory`);
    await this.ensureDir(parentOf(rel), name, true);
    this.uncounted();
    const lst = lower.st;
    if (lst.isFile()) copyFileKeepingHoles(lower.path, abs, lst);
    else if (lst.isSymbolicLink()) symlinkSync(readlinkSync(lower.path), abs);
    else if (lst.isFIFO()) await this.makeNode(abs, 'p');
    else if (lst.isCharacterDevice() || lst.isBlockDevice()) await this.makeNode(abs, lst.isCharacterDevice() ? 'c' : 'b', devMajor(lst.rdev), devMinor(lst.rdev));
    else throw missing();
    applyAttrsSync(abs, { uid: lst.uid, gid: lst.gid, mode: lst.mode, atimeMs: lst.atimeMs, mtimeMs: lst.mtimeMs, symlink: lst.isSymbolicLink() }, readXattrsSync(lower.path, lst));
    return abs;
  }

  /** What the layers below show at `rel` (overlay), given its parent is a visible directory. */
  private async lowerLookup(rel: string): Promise<Stats | 'symlink' | 'other' | undefined> {
    for (const i of await this.visibleLowers(parentOf(rel))) {
      const st = lstatOrUndefinedSync(join(this.lowers[i]!, rel));
      if (!st) continue;
      if (isOverlayWhiteout(st)) return undefined;
      if (st.isSymbolicLink()) return 'symlink';
      return st.isDirectory() ? st : 'other';
    }
    return undefined;
  }

  /** Lower layers (nearest first) that contribute entries to directory `rel`. */
  private async visibleLowers(rel: string): Promise<number[]> {
    const memo = this.visibleMemo.get(rel);
    if (memo) return memo;
    const out: number[] = [];
    if (!this.opaqueDirs.has(rel)) {
      for (const i of await this.visibleLowers(parentOf(rel))) {
        const abs = join(this.lowers[i]!, rel);
        const st = lstatOrUndefinedSync(abs);
        if (!st) continue;
        if (!st.isDirectory()) break; // a whiteout or file hides everything further down
        out.push(i);
        if (isOpaqueDirSync(abs)) break;
      }
    }
    this.visibleMemo.set(rel, out);
    return out;
  }

  private async markOpaque(rel: string, abs: string): Promise<void> {
    setAttributeSync(abs, OVERLAY_OPAQUE_XATTR, 'y');
    this.opaqueDirs.add(rel);
    this.visibleMemo = new Map([['', this.lowers.map((_, i) => i)]]);
  }

  /** overlay whiteout: a hardlink to one char device 0/0 per layer (mknod costs a process). */
  private async makeWhiteout(abs: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (!this.whiteoutTemplate) {
        const t = join(this.layout.scratch, `whiteout-${randomBytes(6).toString('hex')}`);
        await this.makeNode(t, 'c', 0, 0);
        this.whiteoutTemplate = t;
      }
      try {
        linkSync(this.whiteoutTemplate, abs);
        return;
      } catch (err) {
        if (errno(err) !== 'EMLINK' || attempt > 0) throw err;
        await this.cleanup(); // link count limit reached: start a fresh template
      }
    }
  }

  /** native opaque dir: deletes everything under `rel` that this layer did not write. */
  private async removeUntouched(rel: string): Promise<void> {
    const abs = join(this.root, rel);
    for (const n of readdirSync(abs, { withFileTypes: true })) {
      const childRel = joinRel(rel, n.name);
      if (this.touched.has(childRel)) {
        if (n.isDirectory()) await this.removeUntouched(childRel);
        continue;
      }
      rmSync(join(abs, n.name), { recursive: true, force: true });
      if (n.isDirectory()) this.forgetDirs(childRel);
    }
  }

  private touch(rel: string): void {
    if (this.overlay) return;
    for (let r = rel; r !== '' && !this.touched.has(r); r = parentOf(r)) this.touched.add(r);
  }

  private forgetDirs(rel: string): void {
    const prefix = `${rel}/`;
    for (const d of this.dirs) if (d === rel || d.startsWith(prefix)) this.dirs.delete(d);
    for (const d of this.dirTimes.keys()) if (d === join(this.root, rel) || d.startsWith(join(this.root, rel) + '/')) this.dirTimes.delete(d);
  }

  /** Owner, then mode (chown clears setuid bits), then xattrs (chown drops security.capability). */
  private setAttrs(abs: string, h: LayerEntry): void {
    lchownSync(abs, h.uid ?? 0, h.gid ?? 0);
    chmodSync(abs, (h.mode ?? 0o644) & 0o7777);
    writeXattrsSync(abs, this.xattrsOf(h));
  }

  /** The entry's xattrs, without those overlayfs reserves for itself. */
  private xattrsOf(h: LayerEntry): Array<[string, Buffer]> {
    const out: Array<[string, Buffer]> = [];
    for (const [name, value] of h.xattrs) {
      if (name.startsWith(OVERLAY_XATTR_PREFIX)) this.warn(`skipped xattr ${name} of ${h.name}: reserved for overlayfs`);
      else out.push([name, Buffer.from(value.buffer, value.byteOffset, value.byteLength)]);
    }
    return out;
  }
}

async function drain(body: EntryBody): Promise<void> {
  for await (const _ of body) {
    // discard
  }
}

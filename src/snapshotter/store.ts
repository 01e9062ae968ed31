// Snapshot bookkeeping shared by the overlay and native snapshotters.
//
// Layout under ROOT:
//   metadata/<sha256(key)>.json   one small file per snapshot, written to a temp file and then
//                                 linked (create: fails if the key exists) or renamed into place
//   snapshots/<id>/fs             the snapshot's tree (overlay: its diff; native: a full tree)
//   snapshots/<id>/work           overlay workdir (active overlay snapshots only)
//   mounts/<pid>.<start>-…        temporary mount points (withMounts) and the overlayfs probe,
//                                 named after their owner
//   trash/                        removed snapshot dirs on their way out
//
// Ids are short random names so overlay lowerdir lists stay short. The metadata file is
// written before the snapshot dir exists and removed before the dir goes, so a dir without
// metadata is always garbage, and `sweep()` can tell crash leftovers apart safely: active and
// view snapshots record the process that owns them, unless keep() handed them to the store.

import { createHash, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isOwnerAlive, processToken } from '../util/process.js';
import { listMountPoints, markTopDirectory, settleUnmount, unmountAll } from './mount.js';
import { diskUsage } from './fsutil.js';
import type { Mount, SnapshotInfo, Snapshotter, Usage } from './types.js';
import { pathExists } from '../util/path-exists.js';

export class SnapshotNotFoundError extends Error {
  readonly code = 'ENOENT';
  constructor(readonly key: string, what = 'snapshot') {
    super(`${what} ${JSON.stringify(key)} does not exist`);
    this.name = 'SnapshotNotFoundError';
  }
}

export class SnapshotExistsError extends Error {
  readonly code = 'EEXIST';
  constructor(readonly key: string) {
    super(`snapshot ${JSON.stringify(key)} already exists`);
    this.name = 'SnapshotExistsError';
  }
}

export class SnapshotStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotStateError';
  }
}

export interface SnapshotMeta {
  v: 1;
  key: string;
  id: string;
  kind: SnapshotInfo['kind'];
  parent?: string;
  /** Ids of the committed ancestors, nearest first. */
  lowers: string[];
  /** Owning process of an active or view snapshot (crash cleanup), see processToken(). */
  owner?: string;
  /** An active snapshot handed over to the store by keep(): no owner, never swept. */
  kept?: true;
  created: string;
  /** Disk use as the committer counted it (a committed snapshot never changes). */
  usage?: Usage;
}

/** Where a snapshot's data lives on disk: what layer apply and diff work on. */
export interface SnapshotLayout {
  key: string;
  kind: SnapshotInfo['kind'];
  snapshotter: 'overlayfs' | 'native';
  /** The snapshot's own tree: overlay upper dir (its diff only) or the native full tree. */
  dir: string;
  /** Trees of committed ancestors, nearest first (native: full trees; overlay: their diffs). */
  parents: string[];
  /** A directory on the same filesystem as `dir`, outside it, for scratch files. */
  scratch: string;
}

/** Something check() found: `leftover` when sweep() removes it, else damage sweep() cannot repair. */
export interface SnapshotProblem {
  path: string;
  message: string;
  leftover: boolean;
}

export interface SweepReport {
  unmounted: string[];
  removedSnapshots: string[];
  removedDirs: string[];
}

/** A snapshotter whose snapshots are plain directories on this machine. */
export interface LocalSnapshotter extends Snapshotter {
  readonly root: string;
  layout(key: string): Promise<SnapshotLayout>;
  list(): Promise<SnapshotInfo[]>;
  /**
   * Makes active snapshot `key` outlive its owner process: sweep() leaves it until remove(). A
   * container kept after `builder run` (its writable layer) is one.
   */
  keep(key: string): Promise<void>;
  /** Unmounts and removes what a crashed earlier run left behind (dead owners only). */
  sweep(): Promise<SweepReport>;
  /** Reports, without changing anything, what sweep() would remove and snapshots that lost their data. */
  check(): Promise<SnapshotProblem[]>;
}

export abstract class BaseSnapshotter implements LocalSnapshotter {
  abstract readonly name: 'overlayfs' | 'native';
  protected readonly metaDir: string;
  protected readonly snapshotsDir: string;
  protected readonly mountsDir: string;
  protected readonly trashDir: string;
  readonly root: string;

  constructor(root: string) {
    root = resolve(root);
    this.root = root;
    if (/[,:]/.test(root)) throw new Error(`snapshotter root must not contain ',' or ':' (mount options): ${root}`);
    this.metaDir = join(root, 'metadata');
    this.snapshotsDir = join(root, 'snapshots');
    this.mountsDir = join(root, 'mounts');
    this.trashDir = join(root, 'trash');
  }

  async init(): Promise<void> {
    // Private, as containerd keeps its snapshots: image trees hold setuid binaries and secrets.
    for (const d of [this.metaDir, this.snapshotsDir, this.mountsDir, this.trashDir]) {
      const made = await mkdir(d, { recursive: true, mode: 0o700 });
      await chmod(d, 0o700);
      // Each snapshot is a tree of its own: spread them over the disk (see markTopDirectory).
      if (d === this.snapshotsDir && made !== undefined) await markTopDirectory(d);
    }
  }

  /** Fills the new snapshot dir `dir` (`fs` and anything else the driver needs). */
  protected abstract populate(dir: string, meta: SnapshotMeta): Promise<void>;
  protected abstract mountsOf(meta: SnapshotMeta): Mount[];

  prepare(key: string, parent?: string): Promise<Mount[]> {
    return this.create(key, parent, 'active');
  }

  view(key: string, parent?: string): Promise<Mount[]> {
    return this.create(key, parent, 'view');
  }

  async mounts(key: string): Promise<Mount[]> {
    const meta = await this.require(key);
    if (meta.kind === 'committed') throw new SnapshotStateError(`snapshot ${JSON.stringify(key)} is committed: prepare or view it to mount it`);
    return this.mountsOf(meta);
  }

  /** `usage`: the snapshot's disk use, when the caller counted it (then nobody walks it to know). */
  async commit(name: string, key: string, opts: { usage?: Usage } = {}): Promise<void> {
    const meta = await this.require(key);
    if (meta.kind !== 'active') throw new SnapshotStateError(`snapshot ${JSON.stringify(key)} is a ${meta.kind} snapshot, not active`);
    await settleUnmount(this.fsDir(meta.id));
    const committed: SnapshotMeta = { v: 1, key: name, id: meta.id, kind: 'committed', lowers: meta.lowers, created: new Date().toISOString() };
    if (meta.parent !== undefined) committed.parent = meta.parent;
    if (opts.usage) committed.usage = opts.usage;
    await this.writeMeta(committed, 'create');
    unlinkSync(this.metaPath(key));
  }

  async keep(key: string): Promise<void> {
    const { owner: _owner, ...meta } = await this.require(key);
    if (meta.kind !== 'active') throw new SnapshotStateError(`snapshot ${JSON.stringify(key)} is a ${meta.kind} snapshot, not active`);
    await this.writeMeta({ ...meta, kept: true }, 'replace');
  }

  async remove(key: string): Promise<void> {
    const meta = await this.require(key);
    if (meta.kind === 'committed') {
      const child = (await this.readAllMeta()).find((m) => m.parent === key);
      if (child) throw new SnapshotStateError(`cannot remove committed snapshot ${JSON.stringify(key)}: ${JSON.stringify(child.key)} depends on it`);
    }
    await settleUnmount(this.fsDir(meta.id));
    unlinkSync(this.metaPath(key));
    await this.discardDir(meta.id);
  }

  async stat(key: string): Promise<SnapshotInfo | undefined> {
    const meta = await this.readMeta(key);
    return meta && toInfo(meta);
  }

  async usage(key: string): Promise<Usage> {
    return diskUsage(this.fsDir((await this.require(key)).id));
  }

  async list(): Promise<SnapshotInfo[]> {
    return (await this.readAllMeta()).map(toInfo);
  }

  async layout(key: string): Promise<SnapshotLayout> {
    const meta = await this.require(key);
    const dir = this.snapshotDir(meta.id);
    return {
      key,
      kind: meta.kind,
      snapshotter: this.name,
      dir: join(dir, 'fs'),
      parents: meta.lowers.map((id) => this.fsDir(id)),
      scratch: dir,
    };
  }

  async sweep(): Promise<SweepReport> {
    const report: SweepReport = { unmounted: [], removedSnapshots: [], removedDirs: [] };
    await this.sweepMounts(report);
    await rm(this.trashDir, { recursive: true, force: true });
    await mkdir(this.trashDir, { recursive: true });

    // Dirs first, metadata second: a concurrent prepare writes metadata before its dir, so any
    // dir listed here whose metadata is missing afterwards is truly unreferenced.
    const dirs = await readdir(this.snapshotsDir);
    let metas = await this.readAllMeta();
    const committedIds = new Set(metas.filter((m) => m.kind === 'committed').map((m) => m.id));
    const discarded = new Set<string>();
    for (const m of metas) {
      if (m.kind === 'committed' || m.kept || (m.owner !== undefined && isOwnerAlive(m.owner))) continue;
      await this.forget(m, report);
      // A crash between the two steps of commit leaves the active entry sharing the committed dir.
      if (!committedIds.has(m.id)) {
        await this.discardDir(m.id);
        discarded.add(m.id);
      }
    }
    // Committed snapshots whose data or parent vanished cannot be mounted any more.
    metas = await this.readAllMeta();
    for (let changed = true; changed; ) {
      changed = false;
      const keys = new Set(metas.map((m) => m.key));
      for (const m of metas) {
        const broken = (m.parent !== undefined && !keys.has(m.parent)) || !(await pathExists(this.fsDir(m.id)));
        if (broken && m.kind === 'committed') {
          await this.forget(m, report);
          changed = true;
        }
      }
      if (changed) metas = await this.readAllMeta();
    }
    const referenced = new Set(metas.map((m) => m.id));
    for (const id of dirs) {
      if (referenced.has(id) || discarded.has(id)) continue;
      await this.discardDir(id);
      report.removedDirs.push(id);
    }
    // Temp files of metadata writes by dead processes.
    for (const name of await readdir(this.metaDir)) {
      const owner = /^\.tmp-(\d+\.\d+)-/.exec(name)?.[1];
      if (owner !== undefined && !isOwnerAlive(owner)) await rm(join(this.metaDir, name), { force: true });
    }
    return report;
  }

  async check(): Promise<SnapshotProblem[]> {
    const problems: SnapshotProblem[] = [];
    const metas: SnapshotMeta[] = [];
    for (const name of await readdir(this.metaDir).catch(() => [] as string[])) {
      const path = join(this.metaDir, name);
      const owner = /^\.tmp-(\d+\.\d+)-/.exec(name)?.[1];
      if (owner !== undefined) {
        if (!isOwnerAlive(owner)) problems.push({ path, message: 'temporary snapshot metadata of a process that is gone', leftover: true });
        continue;
      }
      try {
        const meta = await readMetaFile(path);
        if (meta) metas.push(meta);
      } catch (err) {
        problems.push({ path, message: `unreadable snapshot metadata: ${(err as Error).message}`, leftover: false });
      }
    }
    const keys = new Set(metas.map((m) => m.key));
    for (const m of metas) {
      const path = this.metaPath(m.key);
      if (m.kind !== 'committed') {
        if (m.kept) continue;
        if (m.owner === undefined || !isOwnerAlive(m.owner)) problems.push({ path, message: `${m.kind} snapshot ${JSON.stringify(m.key)} of a process that is gone`, leftover: true });
        continue;
      }
      if (!(await pathExists(this.fsDir(m.id)))) problems.push({ path, message: `committed snapshot ${JSON.stringify(m.key)} lost its data (${this.fsDir(m.id)})`, leftover: false });
      if (m.parent !== undefined && !keys.has(m.parent)) problems.push({ path, message: `committed snapshot ${JSON.stringify(m.key)} lost its parent ${JSON.stringify(m.parent)}`, leftover: false });
    }
    const referenced = new Set(metas.map((m) => m.id));
    for (const id of await readdir(this.snapshotsDir).catch(() => [] as string[])) {
      if (!referenced.has(id)) problems.push({ path: this.snapshotDir(id), message: 'snapshot directory without metadata', leftover: true });
    }
    for (const name of await readdir(this.trashDir).catch(() => [] as string[])) {
      problems.push({ path: join(this.trashDir, name), message: 'removed snapshot not yet deleted', leftover: true });
    }
    for (const name of await readdir(this.mountsDir).catch(() => [] as string[])) {
      const owner = /^(\d+\.\d+)-/.exec(name)?.[1];
      if (owner === undefined || !isOwnerAlive(owner)) problems.push({ path: join(this.mountsDir, name), message: 'mount point of a process that is gone', leftover: true });
    }
    return problems;
  }

  // --- internals -----------------------------------------------------------------------------

  private async create(key: string, parentKey: string | undefined, kind: 'active' | 'view'): Promise<Mount[]> {
    let lowers: string[] = [];
    if (parentKey !== undefined) {
      const parent = await this.readMeta(parentKey);
      if (!parent) throw new SnapshotNotFoundError(parentKey, 'parent snapshot');
      if (parent.kind !== 'committed') throw new SnapshotStateError(`parent ${JSON.stringify(parentKey)} is not committed`);
      lowers = [parent.id, ...parent.lowers];
    }
    const meta: SnapshotMeta = { v: 1, key, id: newId(), kind, lowers, owner: processToken(), created: new Date().toISOString() };
    if (parentKey !== undefined) meta.parent = parentKey;
    await this.writeMeta(meta, 'create');
    try {
      for (;;) {
        try {
          mkdirSync(this.snapshotDir(meta.id));
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          meta.id = newId(); // astronomically rare collision: take another id
          await this.writeMeta(meta, 'replace');
        }
      }
      await this.populate(this.snapshotDir(meta.id), meta);
      return this.mountsOf(meta);
    } catch (err) {
      rmSync(this.metaPath(key), { force: true });
      await this.discardDir(meta.id).catch(() => undefined);
      throw err;
    }
  }

  private async sweepMounts(report: SweepReport): Promise<void> {
    const prefix = `${this.mountsDir}/`;
    const ownerDead = (p: string): boolean => {
      const owner = /^(\d+\.\d+)-/.exec(p.slice(prefix.length))?.[1];
      return owner === undefined || !isOwnerAlive(owner);
    };
    const mounted = (await listMountPoints()).filter((p) => p.startsWith(prefix) && ownerDead(p));
    // Deepest first, so nested mounts come off before their parents.
    for (const p of [...new Set(mounted)].sort((a, b) => b.length - a.length)) {
      await unmountAll(p);
      report.unmounted.push(p);
    }
    const stillMounted = await listMountPoints();
    for (const name of await readdir(this.mountsDir)) {
      const p = join(this.mountsDir, name);
      // Never recurse into something mounted (at it or, in an overlay probe's dir, below it):
      // that would delete a snapshot's contents.
      const mounted = stillMounted.some((m) => m === p || m.startsWith(`${p}/`));
      if (ownerDead(p) && !mounted) await rm(p, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private async forget(m: SnapshotMeta, report: SweepReport): Promise<void> {
    await rm(this.metaPath(m.key), { force: true });
    report.removedSnapshots.push(m.key);
  }

  protected snapshotDir(id: string): string {
    return join(this.snapshotsDir, id);
  }

  protected fsDir(id: string): string {
    return join(this.snapshotsDir, id, 'fs');
  }

  /** Moves a snapshot dir out of the way atomically, then deletes it. */
  private async discardDir(id: string): Promise<void> {
    const dest = join(this.trashDir, `${id}-${randomBytes(4).toString('hex')}`);
    try {
      renameSync(this.snapshotDir(id), dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await rm(dest, { recursive: true, force: true });
  }

  private metaPath(key: string): string {
    return join(this.metaDir, `${createHash('sha256').update(key).digest('hex')}.json`);
  }

  private async require(key: string): Promise<SnapshotMeta> {
    const meta = await this.readMeta(key);
    if (!meta) throw new SnapshotNotFoundError(key);
    return meta;
  }

  private async readMeta(key: string): Promise<SnapshotMeta | undefined> {
    return readMetaFile(this.metaPath(key));
  }

  private async readAllMeta(): Promise<SnapshotMeta[]> {
    const names = (await readdir(this.metaDir)).filter((n) => n.endsWith('.json'));
    const metas = await Promise.all(names.map((n) => readMetaFile(join(this.metaDir, n))));
    return metas.filter((m): m is SnapshotMeta => m !== undefined);
  }

  /** 'create' fails with SnapshotExistsError when the key exists; 'replace' overwrites. */
  private async writeMeta(meta: SnapshotMeta, mode: 'create' | 'replace'): Promise<void> {
    const tmp = join(this.metaDir, `.tmp-${processToken()}-${randomBytes(6).toString('hex')}`);
    // Synchronous: three tiny calls on every prepare and commit, where thread-pool round trips
    // cost more than the calls themselves.
    writeFileSync(tmp, JSON.stringify(meta));
    try {
      if (mode === 'replace') {
        renameSync(tmp, this.metaPath(meta.key));
        return;
      }
      linkSync(tmp, this.metaPath(meta.key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SnapshotExistsError(meta.key);
      throw err;
    } finally {
      rmSync(tmp, { force: true });
    }
  }
}

async function readMetaFile(path: string): Promise<SnapshotMeta | undefined> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as SnapshotMeta;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function toInfo(meta: SnapshotMeta): SnapshotInfo {
  const info: SnapshotInfo = { key: meta.key, kind: meta.kind, created: meta.created };
  if (meta.parent !== undefined) info.parent = meta.parent;
  if (meta.usage !== undefined) info.usage = meta.usage;
  return info;
}

/** 8 base32 characters (40 random bits): short enough to keep overlay option strings small. */
function newId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes = randomBytes(8);
  let id = '';
  for (let i = 0; i < 8; i++) id += alphabet[bytes[i]! & 31];
  return id;
}


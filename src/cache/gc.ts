// What the state directory holds, and removing what nothing needs: disk usage (`builder du`),
// pruning (`builder prune`) and the automatic collection after a build.
//
// The roots are the names in the image store: the blobs an image name reaches (index, manifests,
// configs, layers) are never removed, and neither are the snapshots of their layer chains unless
// `all` is asked (a snapshot is only an unpacked copy of layers, so it can be made again). Every
// other thing is a prune candidate, ordered by last use, oldest first, as BuildKit's Prune:
//
//   cache record   a step's cache key → layers; removing it frees the layer blobs (and their
//                  compressed copies) that no image and no remaining record names. A record
//                  whose whole layer chain an image holds is "shared" and, as in BuildKit, kept
//                  unless `all`; pruning down to `keepStorage` keeps it even then, as removing
//                  it frees nothing.
//   snapshot       a committed snapshot (named by the ChainID of its layers); removed children first.
//   blob           a blob nothing names (a pushed manifest, an image whose name moved); with
//                  `all`, also the compressed copies of kept layers (made again on the next push).
//   cache mount    a RUN --mount=type=cache directory, only with `all` or `cacheMounts`, and
//                  never while a live process holds it.
//
// `until` keeps what was used within that time; `keepStorage` stops once the state directory's
// total (blobs, snapshots, cache mounts) is at most that many bytes. Last use: a cache record's
// mtime (CacheIndex touches it on every hit), a snapshot's commit time or the last use of a record
// or snapshot built on it, a cache mount's cache.json, a loose blob's mtime.
//
// Callers of pruneStore hold the state directory alone (openState exclusive): no build is running, so nothing in use is
// removed. Disk usage only reads.

import { statSync, type Stats } from 'node:fs';
import { readdir, readFile, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { chainIDs } from '../oci/digest.js';
import { isIndexMediaType, type Descriptor, type Digest, type ImageConfigFile, type ImageIndex, type ImageManifest } from '../oci/types.js';
import { diskUsage } from '../snapshotter/fsutil.js';
import type { LocalSnapshotter } from '../snapshotter/index.js';
import type { StoredCacheRecord } from './cache-index.js';
import { listCacheMounts, removeCacheMount } from './cache-mounts.js';
import type { State } from './state.js';
import { writeFileAtomic } from '../util/write-file.js';

export type EntryKind = 'blob' | 'cache-record' | 'snapshot' | 'cache-mount';

/** One thing the state directory holds. */
export interface StoreEntry {
  kind: EntryKind;
  /** Digest (blob), cache key (record), ChainID (snapshot) or the cache's id (cache mount). */
  id: string;
  /** Bytes: a blob's length; a snapshot's or cache mount's blocks on disk; a record's own layers (those no other record or image names). */
  size: number;
  lastUsed: Date;
  /** What keeps it: a named image, the cache (a record names it), or nothing. */
  usedBy: 'image' | 'cache' | 'none';
}

export interface PruneOptions {
  /** Also what images share (cache records whose layers an image holds, the snapshots of image layers), and cache mounts. */
  all?: boolean;
  /** Stop once the state directory holds at most this many bytes (most recently used kept). */
  keepStorage?: number;
  /** Only what was last used more than this many milliseconds ago. */
  until?: number;
  /** Also cache mounts (implied by `all`). */
  cacheMounts?: boolean;
}

export interface DiskUsage {
  images: { count: number; size: number };
  /** The content store: layers, configs, manifests; bytes by what keeps them. */
  blobs: { count: number; size: number; image: number; cacheOnly: number; unreferenced: number };
  cacheRecords: number;
  snapshots: { count: number; size: number };
  cacheMounts: { count: number; size: number };
  total: number;
  /** Bytes `prune` would free, and `prune --all` (cache mounts included). */
  reclaimable: { prune: number; all: number };
  entries: StoreEntry[];
}

/** The state directory's contents and what references what. */
interface Inventory {
  blobs: Map<Digest, { size: number; mtime: Date }>;
  images: number;
  imageBlobs: Set<Digest>;
  imageChains: Set<string>;
  records: StoredCacheRecord[];
  /** Compressed copies: the record file, the uncompressed source and the copy. */
  compressed: Array<{ file: string; source: Digest; copy: Digest }>;
  snapshots: Array<{ key: string; parent?: string; size: number; created: Date }>;
  cacheMounts: Array<{ dir: string; id: string; size: number; lastUsed: Date; held: boolean }>;
}

/** A planned removal; `frees` are the blobs that go with it; `dir` a cache mount's directory. */
interface Removal {
  entry: StoreEntry;
  frees: Digest[];
  dir?: string;
}

/** What of the state directory disk usage and pruning read. */
export type StateParts = Pick<State, 'root' | 'images' | 'store' | 'cache'>;

export async function diskUsageOf(state: StateParts, sn: LocalSnapshotter | undefined): Promise<DiskUsage> {
  const inv = await inventory(state, sn);
  const recordBlobs = new Set(inv.records.flatMap((r) => r.layers.map((l) => l.digest)));
  const copiesOfKept = new Set(inv.compressed.filter((c) => recordBlobs.has(c.source) || inv.imageBlobs.has(c.source)).map((c) => c.copy));
  const blobs = { count: inv.blobs.size, size: 0, image: 0, cacheOnly: 0, unreferenced: 0 };
  const entries: StoreEntry[] = [];
  for (const [digest, { size, mtime }] of inv.blobs) {
    const usedBy = inv.imageBlobs.has(digest) ? 'image' : recordBlobs.has(digest) || copiesOfKept.has(digest) ? 'cache' : 'none';
    blobs.size += size;
    blobs[usedBy === 'image' ? 'image' : usedBy === 'cache' ? 'cacheOnly' : 'unreferenced'] += size;
    entries.push({ kind: 'blob', id: digest, size, lastUsed: mtime, usedBy });
  }
  const ownSize = plan(inv, { all: true, cacheMounts: true });
  for (const r of inv.records) {
    const own = ownSize.find((x) => x.entry.kind === 'cache-record' && x.entry.id === r.key);
    entries.push({ kind: 'cache-record', id: r.key, size: own?.entry.size ?? 0, lastUsed: r.lastUsed, usedBy: 'cache' });
  }
  const lastUse = snapshotLastUse(inv);
  for (const s of inv.snapshots) entries.push({ kind: 'snapshot', id: s.key, size: s.size, lastUsed: lastUse.get(s.key)!, usedBy: inv.imageChains.has(s.key) ? 'image' : 'cache' });
  for (const c of inv.cacheMounts) entries.push({ kind: 'cache-mount', id: c.id, size: c.size, lastUsed: c.lastUsed, usedBy: 'cache' });
  const sum = (xs: Array<{ size: number }>) => xs.reduce((n, x) => n + x.size, 0);
  const snapshots = { count: inv.snapshots.length, size: sum(inv.snapshots) };
  const cacheMounts = { count: inv.cacheMounts.length, size: sum(inv.cacheMounts) };
  const freed = (rs: Removal[]) => rs.reduce((n, r) => n + r.entry.size, 0);
  return {
    images: { count: inv.images, size: sum([...inv.imageBlobs].map((d) => inv.blobs.get(d) ?? { size: 0 })) },
    blobs,
    cacheRecords: inv.records.length,
    snapshots,
    cacheMounts,
    total: totalOf(inv),
    reclaimable: { prune: freed(plan(inv, {})), all: freed(ownSize) },
    entries,
  };
}

/** Removes what `opts` selects; returns what went, each with the bytes it freed, and the bytes left. */
export async function pruneStore(state: StateParts, sn: LocalSnapshotter | undefined, opts: PruneOptions): Promise<{ removed: StoreEntry[]; total: number }> {
  const inv = await inventory(state, sn);
  let total = totalOf(inv);
  const removed: StoreEntry[] = [];
  const copies = new Map(inv.compressed.map((c) => [c.copy, c.file]));
  const compressedRecords = new Map<Digest, string[]>();
  for (const c of inv.compressed) compressedRecords.set(c.source, [...(compressedRecords.get(c.source) ?? []), c.file]);
  for (const { entry, frees, dir } of plan(inv, opts, Date.now())) {
    if (entry.kind === 'cache-record') await rm(inv.records.find((r) => r.key === entry.id)!.file, { force: true });
    else if (entry.kind === 'snapshot') {
      // A leftover of a crashed build (swept by the next build) may still sit on it.
      if (!(await sn!.remove(entry.id).then(() => true, (err: Error) => (err.name === 'SnapshotStateError' ? false : Promise.reject(err))))) continue;
    } else if (entry.kind === 'cache-mount' && !(await removeCacheMount(dir!))) continue;
    for (const digest of frees) {
      // The record naming a compressed copy goes first: it must never name a missing blob.
      for (const file of [...(compressedRecords.get(digest) ?? []), ...(copies.has(digest) ? [copies.get(digest)!] : [])]) await rm(file, { force: true });
      await rm(state.store.path(digest), { force: true });
    }
    removed.push(entry);
    total -= entry.size;
  }
  return { removed, total };
}

/**
 * The collection after a build: when the state directory holds more than `keepStorage` bytes,
 * prune the least recently used until it holds at most that, first what `prune` would remove,
 * then, if that was not enough, what `prune --all` would (never what image names hold), as
 * BuildKit's default policy ends with an `all` rule.
 */
export async function collectGarbage(state: StateParts, sn: LocalSnapshotter | undefined, keepStorage: number): Promise<StoreEntry[]> {
  const first = await pruneStore(state, sn, { keepStorage });
  if (first.total <= keepStorage) return first.removed;
  return [...first.removed, ...(await pruneStore(state, sn, { keepStorage, all: true })).removed];
}

/**
 * The default of `keepStorage` for the collection after a build, as BuildKit's gckeepstorage
 * before v0.17 (the one Docker 20.10 uses): a tenth of the size of the disk holding `root`, rounded up
 * to whole GB.
 */
export async function defaultKeepStorage(root: string): Promise<number> {
  const fs = await statfs(root);
  return (Math.floor((fs.blocks * fs.bsize) / 10 / 2 ** 30) + 1) * 1e9;
}

/**
 * What pruning with `opts` removes, in order. `now` undefined: ignore `until` and `keepStorage`
 * (disk usage asks what could go at all).
 */
function plan(inv: Inventory, opts: PruneOptions, now?: number): Removal[] {
  const cutoff = now !== undefined && opts.until !== undefined ? now - opts.until : Infinity;
  const keep = now !== undefined ? opts.keepStorage : undefined;
  // Under the limit nothing goes (the usual case after a build): nothing to plan.
  if (keep !== undefined && totalOf(inv) <= keep) return [];
  // Blob references from records; images pin theirs for good.
  const refs = new Map<Digest, number>();
  for (const r of inv.records) for (const d of new Set(r.layers.map((l) => l.digest))) refs.set(d, (refs.get(d) ?? 0) + 1);
  const copiesOf = new Map<Digest, Digest[]>();
  for (const c of inv.compressed) copiesOf.set(c.source, [...(copiesOf.get(c.source) ?? []), c.copy]);
  const held = (d: Digest) => inv.imageBlobs.has(d) || (refs.get(d) ?? 0) > 0;
  const gone = new Set<Digest>();
  /** Frees `d` (and its compressed copies) when nothing holds it any more. */
  const release = (d: Digest, out: Digest[]): number => {
    if (held(d) || gone.has(d) || !inv.blobs.has(d)) return 0;
    gone.add(d);
    out.push(d);
    let size = inv.blobs.get(d)!.size;
    for (const copy of copiesOf.get(d) ?? []) size += release(copy, out);
    return size;
  };

  type Candidate = { entry: StoreEntry; apply: () => Removal };
  const candidates: Candidate[] = [];
  for (const r of inv.records) {
    const chain = chainIDs(r.layers.map((l) => l.diffID)).at(-1);
    if (!opts.all && (chain === undefined || inv.imageChains.has(chain))) continue;
    // Pruning down to a size, a record whose layers images hold would go without freeing a byte.
    if (keep !== undefined && r.layers.every((l) => inv.imageBlobs.has(l.digest))) continue;
    const entry: StoreEntry = { kind: 'cache-record', id: r.key, size: 0, lastUsed: r.lastUsed, usedBy: 'cache' };
    candidates.push({
      entry,
      apply: () => {
        const frees: Digest[] = [];
        for (const d of new Set(r.layers.map((l) => l.digest))) refs.set(d, refs.get(d)! - 1);
        for (const d of new Set(r.layers.map((l) => l.digest))) entry.size += release(d, frees);
        return { entry, frees };
      },
    });
  }
  const lastUse = snapshotLastUse(inv);
  const children = new Map<string, number>();
  for (const s of inv.snapshots) if (s.parent !== undefined) children.set(s.parent, (children.get(s.parent) ?? 0) + 1);
  for (const s of inv.snapshots) {
    if (!opts.all && inv.imageChains.has(s.key)) continue;
    const entry: StoreEntry = { kind: 'snapshot', id: s.key, size: s.size, lastUsed: lastUse.get(s.key)!, usedBy: 'cache' };
    candidates.push({
      entry,
      apply: () => {
        if (s.parent !== undefined) children.set(s.parent, children.get(s.parent)! - 1);
        return { entry, frees: [] };
      },
    });
  }
  const copies = new Set(inv.compressed.map((c) => c.copy));
  for (const [d, { mtime }] of inv.blobs) {
    // A compressed copy goes with its source, alone once its source is gone, or (`all`) as any cache.
    if (held(d) || (!opts.all && copies.has(d) && inv.compressed.some((c) => c.copy === d && inv.blobs.has(c.source)))) continue;
    const entry: StoreEntry = { kind: 'blob', id: d, size: inv.blobs.get(d)!.size, lastUsed: mtime, usedBy: 'none' };
    candidates.push({
      entry,
      apply: () => {
        const frees: Digest[] = [];
        return { entry: { ...entry, size: release(d, frees) }, frees };
      },
    });
  }
  if (opts.all || opts.cacheMounts) {
    for (const c of inv.cacheMounts) {
      if (c.held) continue;
      const entry: StoreEntry = { kind: 'cache-mount', id: c.id, size: c.size, lastUsed: c.lastUsed, usedBy: 'cache' };
      candidates.push({ entry, apply: () => ({ entry, frees: [], dir: c.dir }) });
    }
  }

  let total = totalOf(inv);
  const pending = candidates.filter((c) => c.entry.lastUsed.getTime() <= cutoff).sort((a, b) => a.entry.lastUsed.getTime() - b.entry.lastUsed.getTime());
  const removals: Removal[] = [];
  while (keep === undefined || total > keep) {
    // The oldest that can go now: a snapshot only once its children are gone.
    const i = pending.findIndex((c) => c.entry.kind !== 'snapshot' || (children.get(c.entry.id) ?? 0) === 0);
    if (i < 0) break;
    const [next] = pending.splice(i, 1);
    const removal = next!.apply();
    if (removal.entry.kind === 'blob' && removal.frees.length === 0) continue; // freed with a record meanwhile
    total -= removal.entry.size;
    removals.push(removal);
  }
  return removals;
}

function totalOf(inv: Inventory): number {
  const sum = (xs: Iterable<{ size: number }>) => [...xs].reduce((n, x) => n + x.size, 0);
  return sum(inv.blobs.values()) + sum(inv.snapshots) + sum(inv.cacheMounts);
}

/** A snapshot is used whenever a record or snapshot built on top of it is. */
function snapshotLastUse(inv: Inventory): Map<string, Date> {
  const last = new Map<string, number>(inv.snapshots.map((s) => [s.key, s.created.getTime()]));
  for (const r of inv.records) {
    for (const chain of chainIDs(r.layers.map((l) => l.diffID))) {
      const t = last.get(chain);
      if (t !== undefined && t < r.lastUsed.getTime()) last.set(chain, r.lastUsed.getTime());
    }
  }
  const parentOf = new Map(inv.snapshots.map((s) => [s.key, s.parent]));
  for (const s of inv.snapshots) {
    const t = last.get(s.key)!;
    for (let p = parentOf.get(s.key); p !== undefined; p = parentOf.get(p)) if ((last.get(p) ?? Infinity) < t) last.set(p, t);
  }
  return new Map([...last].map(([k, t]) => [k, new Date(t)]));
}

async function inventory(state: StateParts, sn: LocalSnapshotter | undefined): Promise<Inventory> {
  const blobs = new Map<Digest, { size: number; mtime: Date }>();
  for (const name of await readdir(state.store.blobsDir)) {
    // Synchronous: a store holds thousands of blobs, and an awaited thread-pool round trip each
    // cost the collection after every build tens of milliseconds per thousand blobs.
    const st = statOrUndefined(join(state.store.blobsDir, name));
    if (st?.isFile() && /^[0-9a-f]{64}$/.test(name)) blobs.set(`sha256:${name}`, { size: st.size, mtime: st.mtime });
  }
  const imageBlobs = new Set<Digest>();
  const imageChains = new Set<string>();
  const readJson = async <T>(d: Digest): Promise<T | undefined> => (blobs.has(d) ? state.store.readJson<T>(d).catch(() => undefined) : undefined);
  const walk = async (desc: Descriptor): Promise<void> => {
    if (!blobs.has(desc.digest) || imageBlobs.has(desc.digest)) return;
    imageBlobs.add(desc.digest);
    if (isIndexMediaType(desc.mediaType)) {
      for (const child of (await readJson<ImageIndex>(desc.digest))?.manifests ?? []) await walk(child);
      return;
    }
    const manifest = await readJson<ImageManifest>(desc.digest);
    if (!manifest?.config) return;
    for (const d of [manifest.config, ...(manifest.layers ?? [])]) if (blobs.has(d.digest)) imageBlobs.add(d.digest);
    const diffIDs = (await readJson<ImageConfigFile>(manifest.config.digest))?.rootfs?.diff_ids ?? [];
    for (const chain of chainIDs(diffIDs)) imageChains.add(chain);
  };
  const named = await state.images.list();
  for (const { descriptor } of named) await walk(descriptor);

  const compressed: Inventory['compressed'] = [];
  const compressedDir = join(state.root, 'compressed');
  for (const algo of await readdir(compressedDir).catch(() => [] as string[])) {
    for (const name of await readdir(join(compressedDir, algo)).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const file = join(compressedDir, algo, name);
      const copy = (await readFile(file, 'utf8').catch(() => '')).trim();
      if (/^sha256:[0-9a-f]{64}$/.test(copy)) compressed.push({ file, source: `sha256:${name}`, copy: copy as Digest });
    }
  }

  const snapshots: Inventory['snapshots'] = [];
  const sizes = new MeasuredSizes(state.root);
  await sizes.load();
  for (const info of sn ? await sn.list() : []) {
    if (info.kind !== 'committed') continue;
    // Counted when committed (a build's layer), else measured once and remembered.
    const size = info.usage?.size ?? (await sizes.of(`snapshot ${info.key} ${info.created ?? ''}`, async () => (await sn!.usage(info.key)).size));
    if (size === undefined) continue; // removed meanwhile
    snapshots.push({ key: info.key, ...(info.parent !== undefined && { parent: info.parent }), size, created: new Date(info.created ?? 0) });
  }
  const cacheMounts: Inventory['cacheMounts'] = [];
  for (const c of await listCacheMounts(state.root)) {
    // A held cache is changing: measured now, not remembered.
    const measure = async () => (await diskUsage(c.dir)).size;
    const size = c.held ? await measure().catch(() => 0) : ((await sizes.of(`cache ${c.dir} ${c.lastUsed.toISOString()}`, measure)) ?? 0);
    cacheMounts.push({ dir: c.dir, id: c.id ?? c.dir.slice(c.dir.lastIndexOf('/') + 1), size, lastUsed: c.lastUsed, held: c.held });
  }
  await sizes.save();
  return { blobs, images: named.length, imageBlobs, imageChains, records: await state.cache.list(), compressed, snapshots, cacheMounts };
}

/**
 * Sizes of trees that do not change until used again, remembered in `measured-sizes.json` so a
 * tree is walked once per change, not on every build's collection: a committed snapshot never
 * changes (keyed by its commit time too, as a ChainID can be removed and committed again), a
 * cache mount changes only while a step holds it (keyed by its last release).
 */
class MeasuredSizes {
  private readonly file: string;
  private known: Record<string, number> = {};
  private readonly seen: Record<string, number> = {};
  private measured = false;

  constructor(root: string) {
    this.file = join(root, 'measured-sizes.json');
  }

  async load(): Promise<void> {
    this.known = await readFile(this.file, 'utf8').then((t) => JSON.parse(t) as Record<string, number>, () => ({}));
  }

  /** The size of the tree `key` stands for, measuring it with `measure` when unknown; undefined when it is gone. */
  async of(key: string, measure: () => Promise<number>): Promise<number | undefined> {
    let size = this.known[key];
    if (size === undefined) {
      size = await measure().catch(() => undefined);
      if (size === undefined) return undefined;
      this.measured = true;
    }
    this.seen[key] = size;
    return size;
  }

  /** Writes what was seen (forgetting what is gone), atomically; a temporary file left by a crash is swept. */
  async save(): Promise<void> {
    if (!this.measured && Object.keys(this.seen).length === Object.keys(this.known).length) return;
    await writeFileAtomic(this.file, JSON.stringify(this.seen));
  }
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

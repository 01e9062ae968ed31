// Where an incremental COPY finds the earlier result it re-uses (see file/reuse.ts): the latest
// result of the same step position, recorded in the cache index, used only when it ran the same
// instruction from the same context directory on the same parent snapshot, and that snapshot
// is still there. The record also holds the index of that result's layer, so that the new layer
// takes the re-used files' content from the earlier one (see snapshotter/layer-splice.ts).

import type { CacheIndex } from '../cache/cache-index.js';
import type { CopiedFiles } from '../cache/copy-record.js';
import type { FileOp } from '../definition/index.js';
import { canonicalJson, chainID, sha256 } from '../oci/digest.js';
import type { Digest } from '../oci/types.js';
import type { EarlierIndex, EarlierLayer, IndexedEntry, LayerIndex, LocalSnapshotter } from '../snapshotter/index.js';
import { CopyReuse } from './file/index.js';
import type { LstatEntry } from '../util/lstat-numbers.js';

export interface CopyHistory {
  cache: CacheIndex;
  snapshotter: LocalSnapshotter;
  /** The step's position across builds (see Solver.position). */
  position: string;
}

/** An earlier result to re-use: its files (`reuse`) and, when recorded, its layer. */
export interface EarlierCopy {
  reuse: CopyReuse;
  layer?: { digest: Digest; index: EarlierIndex };
}

/** What makes two COPY results interchangeable file by file: the op, its context dir, its parent snapshot. */
export function copyFamily(op: FileOp, contextDir: string, parentSnapshot: string | undefined): Digest {
  return sha256(canonicalJson({ op, contextDir, parent: parentSnapshot ?? '' }));
}

/** The earlier result of `family` at this position, when there is a usable one. */
export async function earlierCopy(h: CopyHistory, family: Digest, parentSnapshot: string | undefined): Promise<EarlierCopy> {
  const record = await h.cache.lastCopy(h.position);
  if (record?.family !== family) return { reuse: new CopyReuse() };
  const info = await h.snapshotter.stat(record.snapshot);
  if (info?.kind !== 'committed' || info.parent !== parentSnapshot) return { reuse: new CopyReuse() };
  const { dir } = await h.snapshotter.layout(record.snapshot);
  const reuse = new CopyReuse({ dir, files: record.files });
  // The layer named must be the snapshot's own: its ChainID on the parent is the snapshot's name.
  const layer = record.layer;
  if (!layer || chainID(parentSnapshot, layer.diffID) !== record.snapshot) return { reuse };
  // Not trusted beyond its shape: the splice checks every entry against the blob (see layer-splice.ts).
  return { reuse, layer: { digest: layer.diffID, index: new RecordedLayerIndex(record.files, layer.entries) } };
}

/** What writeLayer is given for a COPY whose re-used files are `linked` (see CopyReuse.finish). */
export function earlierLayer(earlier: EarlierCopy, linked: ReadonlyMap<string, LstatEntry>): EarlierLayer | undefined {
  return earlier.layer && linked.size > 0 ? { ...earlier.layer, same: linked } : undefined;
}

/** Records the result of a COPY that ran with `reuse`, committed as `snapshot` whose own layer is `layer`. */
export async function recordCopy(
  h: CopyHistory,
  family: Digest,
  snapshot: string,
  reuse: CopyReuse,
  layer: { diffID: Digest; index?: LayerIndex },
): Promise<void> {
  const files = reuse.written;
  if (files.size === 0) return;
  let entries: Float64Array | undefined;
  if (layer.index) {
    // At each file's position: the layer's other entries (directories, links) are never re-used.
    entries = new Float64Array(files.size * 3).fill(-1);
    for (let i = 0; i < files.size; i++) {
      const entry = layer.index.get(files.path(i));
      if (entry) entries.set(entry, i * 3);
    }
  }
  await h.cache.recordCopy(h.position, { family, snapshot, files, ...(entries && { layer: { diffID: layer.diffID, entries } }) });
}

/** The earlier layer's index as recorded: three numbers at each recorded file's position (see CopyRecord). */
class RecordedLayerIndex implements EarlierIndex {
  /** Where the next path is expected: the layer's files come in the order the copy wrote them. */
  private next = 0;

  constructor(
    private readonly files: CopiedFiles,
    private readonly entries: Float64Array,
  ) {}

  get(path: string): IndexedEntry | undefined {
    const i = this.files.indexOf(path, this.next);
    if (i < 0) return undefined;
    this.next = i + 1;
    if (this.entries[i * 3]! < 0) return undefined;
    const e = this.entries;
    return [e[i * 3]!, e[i * 3 + 1]!, e[i * 3 + 2]!];
  }
}

// Where an incremental COPY finds the earlier result it re-uses (see file/reuse.ts): the latest
// result of the same step position, recorded in the cache index, used only when it ran the same
// instruction from the same context directory on the same parent snapshot, and that snapshot
// is still there. The record also holds the index of that result's layer, so that the new layer
// takes the re-used files' content from the earlier one (see snapshotter/layer-splice.ts).

import type { Stats } from 'node:fs';
import type { CacheIndex, CopyRecord } from '../cache/cache-index.js';
import type { FileOp } from '../definition/index.js';
import { canonicalJson, chainID, sha256 } from '../oci/digest.js';
import type { Digest } from '../oci/types.js';
import type { EarlierLayer, IndexedEntry, LayerIndex, LocalSnapshotter } from '../snapshotter/index.js';
import { CopyReuse } from './file/index.js';

export interface CopyHistory {
  cache: CacheIndex;
  snapshotter: LocalSnapshotter;
  /** The step's position across builds (see Solver.position). */
  position: string;
}

/** An earlier result to re-use: its files (`reuse`) and, when recorded, its layer. */
export interface EarlierCopy {
  reuse: CopyReuse;
  layer?: { digest: Digest; index: LayerIndex };
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
  const files = new Map<string, string>();
  const { paths, origins } = record.files;
  for (let i = 0; i < paths.length; i++) files.set(paths[i]!, origins[i]!);
  const reuse = new CopyReuse({ dir, files });
  // The layer named must be the snapshot's own: its ChainID on the parent is the snapshot's name.
  const layer = record.layer;
  if (!layer || chainID(parentSnapshot, layer.diffID) !== record.snapshot) return { reuse };
  // Not trusted beyond its shape: the splice checks every entry against the blob (see layer-splice.ts).
  const index = new Map<string, IndexedEntry>();
  for (let i = 0; i < layer.paths.length; i++) index.set(layer.paths[i]!, [layer.entries[3 * i]!, layer.entries[3 * i + 1]!, layer.entries[3 * i + 2]!]);
  return { reuse, layer: { digest: layer.diffID, index } };
}

/** What writeLayer is given for a COPY whose re-used files are `linked` (see CopyReuse.finish). */
export function earlierLayer(earlier: EarlierCopy, linked: ReadonlyMap<string, Stats>): EarlierLayer | undefined {
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
  if (reuse.written.size === 0) return;
  const files = { paths: [...reuse.written.keys()], origins: [...reuse.written.values()] };
  let indexed: CopyRecord['layer'];
  if (layer.index) {
    const entries: number[] = [];
    for (const entry of layer.index.values()) entries.push(...entry);
    indexed = { diffID: layer.diffID, paths: [...layer.index.keys()], entries };
  }
  await h.cache.recordCopy(h.position, { family, snapshot, files, ...(indexed && { layer: indexed }) });
}

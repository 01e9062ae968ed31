// Where an incremental COPY finds the earlier result it re-uses (see file/reuse.ts): the latest
// result of the same step position, recorded in the cache index, used only when it ran the same
// instruction from the same context directory on the same parent snapshot, and that snapshot
// is still there.

import type { CacheIndex } from '../cache/cache-index.js';
import type { FileOp } from '../definition/index.js';
import { canonicalJson, sha256 } from '../oci/digest.js';
import type { Digest } from '../oci/types.js';
import type { LocalSnapshotter } from '../snapshotter/index.js';
import { CopyReuse } from './file/index.js';

export interface CopyHistory {
  cache: CacheIndex;
  snapshotter: LocalSnapshotter;
  /** The step's position across builds (see Solver.position). */
  position: string;
}

/** What makes two COPY results interchangeable file by file: the op, its context dir, its parent snapshot. */
export function copyFamily(op: FileOp, contextDir: string, parentSnapshot: string | undefined): Digest {
  return sha256(canonicalJson({ op, contextDir, parent: parentSnapshot ?? '' }));
}

/** A CopyReuse holding the earlier result of `family` at this position, when there is a usable one. */
export async function earlierCopy(h: CopyHistory, family: Digest, parentSnapshot: string | undefined): Promise<CopyReuse> {
  const record = await h.cache.lastCopy(h.position);
  if (record?.family !== family) return new CopyReuse();
  const info = await h.snapshotter.stat(record.snapshot);
  if (info?.kind !== 'committed' || info.parent !== parentSnapshot) return new CopyReuse();
  const { dir } = await h.snapshotter.layout(record.snapshot);
  return new CopyReuse({ dir, files: new Map(Object.entries(record.files)) });
}

/** Records the result of a COPY that ran with `reuse`, committed as `snapshot`. */
export async function recordCopy(h: CopyHistory, family: Digest, snapshot: string, reuse: CopyReuse): Promise<void> {
  if (reuse.written.size === 0) return;
  await h.cache.recordCopy(h.position, { family, snapshot, files: Object.fromEntries(reuse.written) });
}

// Copy-based snapshotter for machines where overlayfs cannot be mounted: every snapshot's `fs`
// is a full tree. Preparing on a parent copies the parent's tree; mounts are bind mounts.
// Views of a committed snapshot bind its (immutable) tree read-only instead of copying it.

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { copyTree } from './fsutil.js';
import { BaseSnapshotter, type SnapshotMeta } from './store.js';
import type { Mount } from './types.js';

export class NativeSnapshotter extends BaseSnapshotter {
  readonly name = 'native' as const;

  protected async populate(dir: string, meta: SnapshotMeta): Promise<void> {
    const fs = join(dir, 'fs');
    const parent = meta.lowers[0];
    if (meta.kind === 'active' && parent !== undefined) await copyTree(this.fsDir(parent), fs);
    else await mkdir(fs, { mode: 0o755 });
  }

  protected mountsOf(meta: SnapshotMeta): Mount[] {
    const parent = meta.lowers[0];
    if (meta.kind === 'view') {
      return [{ type: 'bind', source: parent !== undefined ? this.fsDir(parent) : this.fsDir(meta.id), options: ['rbind', 'ro'] }];
    }
    return [{ type: 'bind', source: this.fsDir(meta.id), options: ['rbind', 'rw'] }];
  }
}

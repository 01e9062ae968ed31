// overlayfs snapshotter: each committed snapshot's `fs` holds only its layer's diff, with
// whiteouts in overlay form (char device 0/0, `trusted.overlay.opaque=y` dirs); an active
// snapshot is an overlay of its committed chain with its own `fs` as the upper dir. Its `work`
// dir (overlay's, empty but for overlay's own dirs) stays when it is committed: removing those
// few directories cost more per RUN step than anything else in a commit, and the snapshot's
// removal takes them with it.

import { mkdirSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { BaseSnapshotter, type SnapshotMeta } from './store.js';
import type { Mount } from './types.js';

/**
 * Options every overlay mount gets. They keep the upper dir a complete, self-describing diff:
 * no redirect xattrs for renamed dirs, no metadata-only copy-ups, no inode index.
 */
export const OVERLAY_OPTIONS = ['index=off', 'redirect_dir=off', 'metacopy=off'] as const;

/**
 * Writable mounts are `volatile` (Linux 5.10+): unmounting skips the sync of the upper
 * filesystem, a few milliseconds per RUN step. An active snapshot does not outlive a crash
 * anyway (sweep() removes it); committed layers are also kept as blobs in the content store.
 */
export const VOLATILE = kernelAtLeast(release(), 5, 10);

export function kernelAtLeast(version: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

export class OverlaySnapshotter extends BaseSnapshotter {
  readonly name = 'overlayfs' as const;

  protected async populate(dir: string, meta: SnapshotMeta): Promise<void> {
    mkdirSync(join(dir, 'fs'), { mode: 0o755 });
    if (meta.kind === 'active' && meta.lowers.length > 0) mkdirSync(join(dir, 'work'), { mode: 0o700 });
  }

  protected mountsOf(meta: SnapshotMeta): Mount[] {
    const own = this.fsDir(meta.id);
    const lowers = meta.lowers.map((id) => this.fsDir(id));
    if (meta.kind === 'view') {
      if (lowers.length === 0) return [{ type: 'bind', source: own, options: ['rbind', 'ro'] }];
      if (lowers.length === 1) return [{ type: 'bind', source: lowers[0]!, options: ['rbind', 'ro'] }];
      // Without an upper dir overlay is read-only (and needs at least two lower dirs).
      return [{ type: 'overlay', source: 'overlay', options: [...OVERLAY_OPTIONS, `lowerdir=${lowers.join(':')}`] }];
    }
    if (lowers.length === 0) return [{ type: 'bind', source: own, options: ['rbind', 'rw'] }];
    return [
      {
        type: 'overlay',
        source: 'overlay',
        options: [
          ...OVERLAY_OPTIONS,
          ...(VOLATILE ? ['volatile'] : []),
          `workdir=${join(this.snapshotDir(meta.id), 'work')}`,
          `upperdir=${own}`,
          `lowerdir=${lowers.join(':')}`,
        ],
      },
    ];
  }
}

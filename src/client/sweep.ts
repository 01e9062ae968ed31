// What builds that did not finish leave behind in a state directory, and its removal: run by
// whoever holds the directory alone when a sweep is due (see openState in src/cache/state.ts).

import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { removeDeadLock } from '../cache/lock.js';
import { removeTemporaryFiles } from '../cache/temp-files.js';
import { RuncExecutor } from '../executor/runc.js';
import { createSnapshotter, type SnapshotterKind } from '../snapshotter/index.js';

/** Where the executor of state directory `root` keeps its runs' bundles. */
export function bundleRoot(root: string): string {
  return join(root, 'bundles');
}

/** Removes leftover containers, mounts, temporary snapshots and files, a dead image index lock, and stale step claims. */
export async function sweepLeftovers(root: string, snapshotter: SnapshotterKind = 'auto'): Promise<void> {
  // Containers first: a leftover container keeps its rootfs mount busy.
  await new RuncExecutor({ bundleRoot: bundleRoot(root) }).sweep();
  await (await createSnapshotter(root, snapshotter)).sweep();
  await removeTemporaryFiles(root);
  await removeDeadLock(join(root, 'index.lock'));
  // Claims on steps of builds that died (nobody else is running).
  await rm(join(root, 'cache', 'running'), { recursive: true, force: true });
  await mkdir(join(root, 'cache', 'running'), { recursive: true });
}

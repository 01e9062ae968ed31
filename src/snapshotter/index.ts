// The snapshotter: snapshots in containerd's sense (prepare / view / commit / remove / mounts,
// types.ts), stored as overlayfs layers or native full copies (store.ts, overlay.ts, native.ts),
// applying layer blobs to them safely (apply.ts) and diffing them into deterministic layer tars
// (diff.ts). It must not know registries, images or Dockerfile syntax: it is given blobs and
// keys, and hands back tars and directories.
//
// This file holds the entry points: choosing a driver, mounting helpers.

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { processToken } from '../util/process.js';
import { mknod, OVERLAY_OPAQUE_XATTR, setAttribute } from './fsutil.js';
import { mountAll, unmountAll } from './mount.js';
import { NativeSnapshotter } from './native.js';
import { OVERLAY_OPTIONS, OverlaySnapshotter } from './overlay.js';
import type { BaseSnapshotter, LocalSnapshotter, SweepReport } from './store.js';

export type { Mount, SnapshotInfo, Snapshotter, Usage } from './types.js';
export {
  SnapshotExistsError,
  SnapshotNotFoundError,
  SnapshotStateError,
  type LocalSnapshotter,
  type SnapshotLayout,
  type SnapshotProblem,
  type SweepReport,
} from './store.js';
export { isMountPoint, mountAll, settleUnmount, unmountAll, withMounts, type WithMountsOptions } from './mount.js';
export { NativeSnapshotter } from './native.js';
export { OverlaySnapshotter } from './overlay.js';
export { applyLayer, DiffIDMismatchError, LayerSecurityError, WRITER_THREAD_MIN_BYTES, type ApplyLayerOptions } from './apply.js';
export { holdLayerWriter } from './layer-writer.js';
export { writeLayer, type WriteLayerOptions, type WrittenLayer } from './diff.js';
export type { EarlierIndex, EarlierLayer, IndexedEntry, LayerIndex } from './layer-splice.js';
export { unpackLayer, type UnpackableLayer } from './unpack.js';

export type SnapshotterKind = 'auto' | 'overlayfs' | 'native';

/** Where older versions probed overlayfs: `root/probe-…`, left (maybe mounted) by a kill. */
const PROBE_PREFIX = 'probe-';

/**
 * Opens (creating if needed) the snapshot state in `root`. The driver used first is recorded in
 * `root/driver`: the two drivers lay snapshots out differently, so a root never changes driver,
 * and 'auto' only probes overlayfs (one test mount) for a new root.
 */
export async function createSnapshotter(root: string, kind: SnapshotterKind = 'auto'): Promise<LocalSnapshotter> {
  root = resolve(root);
  await mkdir(root, { recursive: true });
  const driverFile = join(root, 'driver');
  const recorded = await readFile(driverFile, 'utf8').then((s) => s.trim(), () => undefined);
  if (recorded !== undefined && recorded !== 'overlayfs' && recorded !== 'native') {
    throw new Error(`${driverFile}: unknown snapshotter driver ${JSON.stringify(recorded)}`);
  }
  let driver: 'overlayfs' | 'native';
  if (recorded !== undefined) {
    if (kind !== 'auto' && kind !== recorded) {
      throw new Error(`${root} holds ${recorded} snapshots; it cannot be opened as ${kind}`);
    }
    driver = recorded;
  } else {
    await removeProbes(root);
    driver = kind === 'auto' ? ((await overlaySupported(root)) ? 'overlayfs' : 'native') : kind;
    await writeFile(driverFile, `${driver}\n`);
  }
  const sn: BaseSnapshotter = driver === 'overlayfs' ? new OverlaySnapshotter(root) : new NativeSnapshotter(root);
  await sn.init();
  return sn;
}

/**
 * Whether overlayfs works on the filesystem of `root` with the options we need, including
 * creating whiteouts (char device 0/0) and trusted.* xattrs (root only) in an upper dir.
 * The probe works in `root/mounts/<owner>-probe`, named like withMounts' mount points, so when
 * this process is killed halfway, sweep() unmounts and removes what it left.
 */
export async function overlaySupported(root: string): Promise<boolean> {
  const dir = join(root, 'mounts', `${processToken()}-probe-${randomBytes(4).toString('hex')}`);
  const [l1, l2, upper, work, merged] = ['l1', 'l2', 'u', 'w', 'm'].map((d) => join(dir, d)) as [string, string, string, string, string];
  // From the mount attempt until its unmount succeeds, the probe may be mounted.
  let mounted = false;
  try {
    for (const d of [l1, l2, upper, work, merged]) await mkdir(d, { recursive: true });
    await mknod(join(upper, 'wh'), 'c', 0, 0);
    await setAttribute(l2, OVERLAY_OPAQUE_XATTR, 'y');
    const options = [...OVERLAY_OPTIONS, `workdir=${work}`, `upperdir=${upper}`, `lowerdir=${l2}:${l1}`];
    mounted = true;
    // `volatile` (Linux 5.10+) spares the unmount a sync of the whole upper file system, which
    // after a large write (a cold build) took hundreds of ms; a kernel without it is probed without.
    const mount = (extra: string[]) => mountAll([{ type: 'overlay', source: 'overlay', options: [...options, ...extra] }], merged);
    await mount(['volatile']).catch(() => mount([]));
    await unmountAll(merged);
    mounted = false;
    return true;
  } catch {
    return false;
  } finally {
    // Never delete through a mount that would not come off: leave it to a later sweep().
    const unmounted = !mounted || (await unmountAll(merged).then(() => true, () => false));
    if (unmounted) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Overlay probe directories of older versions in `root` (today's probe is swept with mounts/). */
export async function probeDirs(root: string): Promise<string[]> {
  return (await readdir(root).catch(() => [] as string[])).filter((n) => n.startsWith(PROBE_PREFIX)).map((n) => join(root, n));
}

async function removeProbes(root: string): Promise<void> {
  for (const dir of await probeDirs(root)) {
    await unmountAll(join(dir, 'm')).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Start-up cleanup of a snapshot root: see LocalSnapshotter.sweep. */
export async function sweep(root: string): Promise<SweepReport> {
  return (await createSnapshotter(root)).sweep();
}

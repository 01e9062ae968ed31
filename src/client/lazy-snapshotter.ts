// A build's snapshotter, opened on first use. A build whose every step comes from the cache never
// needs one; opening it (createSnapshotter: the driver file, four directories made private) is a
// dozen thread-pool trips, and the first of them starts the pool's threads, which such a build
// otherwise never needs. A bad driver file, or a --snapshotter the state directory was not made
// with, fails the first step that needs snapshots, as it failed the build before.

import { resolve } from 'node:path';
import { createSnapshotter, type LocalSnapshotter, type Mount, type SnapshotInfo, type SnapshotterKind, type Usage } from '../snapshotter/index.js';
import type { SnapshotLayout, SnapshotProblem, SweepReport } from '../snapshotter/index.js';

export class LazySnapshotter implements LocalSnapshotter {
  readonly root: string;
  private opening: Promise<LocalSnapshotter> | undefined;
  private opened: LocalSnapshotter | undefined;

  constructor(
    root: string,
    private readonly kind: SnapshotterKind,
  ) {
    this.root = resolve(root);
  }

  /** The driver; known once a method has opened the snapshotter. */
  get name(): LocalSnapshotter['name'] {
    if (!this.opened) throw new Error('the snapshotter is not open yet');
    return this.opened.name;
  }

  private open(): Promise<LocalSnapshotter> {
    this.opening ??= createSnapshotter(this.root, this.kind).then((sn) => (this.opened = sn));
    return this.opening;
  }

  async prepare(key: string, parent?: string): Promise<Mount[]> {
    return (await this.open()).prepare(key, parent);
  }

  async view(key: string, parent?: string): Promise<Mount[]> {
    return (await this.open()).view(key, parent);
  }

  async mounts(key: string): Promise<Mount[]> {
    return (await this.open()).mounts(key);
  }

  async commit(name: string, key: string, opts?: { usage?: Usage }): Promise<void> {
    return (await this.open()).commit(name, key, opts);
  }

  async remove(key: string): Promise<void> {
    return (await this.open()).remove(key);
  }

  async stat(key: string): Promise<SnapshotInfo | undefined> {
    return (await this.open()).stat(key);
  }

  async usage(key: string): Promise<Usage> {
    return (await this.open()).usage(key);
  }

  async layout(key: string): Promise<SnapshotLayout> {
    return (await this.open()).layout(key);
  }

  async list(): Promise<SnapshotInfo[]> {
    return (await this.open()).list();
  }

  async keep(key: string): Promise<void> {
    return (await this.open()).keep(key);
  }

  async sweep(): Promise<SweepReport> {
    return (await this.open()).sweep();
  }

  async check(): Promise<SnapshotProblem[]> {
    return (await this.open()).check();
  }
}

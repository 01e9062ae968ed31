// Snapshots in the containerd sense. A snapshot is a filesystem tree identified by a key:
// *active* snapshots are writable and short-lived, *committed* ones are immutable and may be
// parents of others. A committed snapshot that holds an image's layer chain is named by that
// chain's ChainID (OCI image spec), so the same layers are unpacked once per state directory.
//
// Worked example, a RUN step:
//   const mounts = await sn.prepare('run-42', chainIdOfParentLayers); // writable, on top of the parent
//   ... mount `mounts` at a temporary directory, run the container there, unmount ...
//   const layer = await diff(sn, 'run-42');                         // the change as an OCI layer tar
//   await sn.commit(chainIdAfterThisLayer, 'run-42');               // reusable by later steps

export interface Mount {
  /** `overlay` or `bind` */
  type: string;
  source: string;
  options: string[];
}

export interface SnapshotInfo {
  key: string;
  kind: 'active' | 'view' | 'committed';
  parent?: string;
  /** When it was made (committed: when committed), ISO 8601. */
  created?: string;
  /** Its disk use, when the committer knew it (see commit). */
  usage?: Usage;
}

/** Disk use of one snapshot's own data (overlay: its diff; native: its full tree), as containerd's Usage. */
export interface Usage {
  /** Bytes allocated on disk (blocks × 512; holes and hardlinked inodes count once). */
  size: number;
  /** Distinct inodes, the snapshot's root directory included. */
  inodes: number;
}

export interface Snapshotter {
  readonly name: 'overlayfs' | 'native';
  /** Creates a writable snapshot `key` on top of committed `parent` (none: empty). */
  prepare(key: string, parent?: string): Promise<Mount[]>;
  /** Creates a read-only snapshot `key` of committed `parent`. */
  view(key: string, parent?: string): Promise<Mount[]>;
  /** The mounts of an existing active or view snapshot. */
  mounts(key: string): Promise<Mount[]>;
  /**
   * Turns active snapshot `key` into committed snapshot `name`; fails with SnapshotExistsError,
   * leaving `key` as it was, when `name` exists (as containerd's ErrAlreadyExists: whether that
   * snapshot serves is the caller's call).
   */
  commit(name: string, key: string, opts?: { usage?: Usage }): Promise<void>;
  /** Removes a snapshot; committed snapshots with children cannot be removed. */
  remove(key: string): Promise<void>;
  stat(key: string): Promise<SnapshotInfo | undefined>;
  /** Disk use of the snapshot's own data. */
  usage(key: string): Promise<Usage>;
}

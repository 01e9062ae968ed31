// The containers `run()` kept (run without `remove`): listed as `builder ps` does, removed with
// their writable layer as `builder rm` does.

import { resolve } from 'node:path';
import { ContainerStore, isRunning, type ContainerRecord } from '../cache/containers.js';
import { defaultStateRoot } from '../cache/state.js';
import { createSnapshotter } from '../snapshotter/index.js';
import { openRunState } from './run.js';

export type { ContainerRecord } from '../cache/containers.js';

export interface ContainerInfo extends ContainerRecord {
  running: boolean;
}

/** The containers of the state directory `root`, oldest first; `all: false` keeps only running ones. */
export async function listContainers(opts: { root?: string; all?: boolean } = {}): Promise<ContainerInfo[]> {
  const records = await new ContainerStore(resolve(opts.root ?? defaultStateRoot())).list();
  return records.map((r) => ({ ...r, running: isRunning(r) })).filter((c) => opts.all || c.running);
}

/**
 * Removes containers (by name, ID or a unique prefix of it) and their writable layers, as
 * `docker rm`. A running one is refused. Returns what was removed, as given; stops at the first
 * it cannot remove.
 */
export async function removeContainers(refs: readonly string[], opts: { root?: string; onWarning?: (message: string) => void } = {}): Promise<string[]> {
  const state = await openRunState(opts.root, opts);
  const removed: string[] = [];
  try {
    const containers = new ContainerStore(state.root);
    const sn = await createSnapshotter(state.root);
    for (const ref of refs) {
      const c = await containers.find(ref);
      if (!c) throw new Error(`no such container: ${ref}`);
      if (isRunning(c)) throw new Error(`container ${c.name} is running: stop it first (Ctrl-C where it runs)`);
      // The layer first: a kept snapshot (never swept) is never left without the record that finds it.
      if (await sn.stat(c.snapshot)) await sn.remove(c.snapshot);
      await containers.delete(c.name);
      removed.push(ref);
    }
    return removed;
  } finally {
    await state.release({ clean: true });
  }
}

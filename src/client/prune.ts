// `prune()`: removes what no image name needs from the state directory (see src/cache/gc.ts for
// what goes and in which order). It needs the state directory alone, so it waits for running
// builds and no build starts while it runs: nothing a build uses is removed under it.

import { resolve } from 'node:path';
import { pruneStore, type PruneOptions as StorePruneOptions, type StoreEntry } from '../cache/gc.js';
import { defaultStateRoot, openState } from '../cache/state.js';
import { existingSnapshotter } from './du.js';
import { sweepLeftovers } from './sweep.js';

export interface PruneOptions extends StorePruneOptions {
  /** State directory; default as for `build()`. */
  root?: string;
  /** Told once when another build or prune holds the state directory and this one waits. */
  onWait?: (message: string) => void;
  signal?: AbortSignal;
}

export interface PruneResult {
  /** What went, each with the bytes its removal freed. */
  removed: StoreEntry[];
  freed: number;
}

export async function prune(opts: PruneOptions = {}): Promise<PruneResult> {
  // Alone, it also sweeps what unfinished builds left, as the next build would.
  const state = await openState(resolve(opts.root ?? defaultStateRoot()), { access: 'exclusive', onWait: opts.onWait, signal: opts.signal, sweep: (root) => sweepLeftovers(root) });
  try {
    const { removed } = await pruneStore(state, await existingSnapshotter(state.root), opts);
    return { removed, freed: removed.reduce((n, e) => n + e.size, 0) };
  } finally {
    await state.release({ clean: true });
  }
}

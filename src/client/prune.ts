// `prune()`: removes what no image name needs from the state directory (see src/cache/gc.ts for
// what goes and in which order). It takes the state lock, so it waits for a running build and no
// build starts while it runs: nothing a build uses is removed under it.

import { resolve } from 'node:path';
import { pruneStore, type PruneOptions as StorePruneOptions, type StoreEntry } from '../cache/gc.js';
import { defaultStateRoot, openState } from '../cache/state.js';
import { existingSnapshotter } from './du.js';

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
  const state = await openState(resolve(opts.root ?? defaultStateRoot()), { onWait: opts.onWait, signal: opts.signal });
  try {
    const { removed } = await pruneStore(state, await existingSnapshotter(state.root), opts);
    return { removed, freed: removed.reduce((n, e) => n + e.size, 0) };
  } finally {
    // Pruning leaves nothing to sweep: the next build sweeps only if the last one did not finish.
    await state.release({ clean: state.previousClean });
  }
}

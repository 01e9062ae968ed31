// Unpacking one layer of a chain into its committed snapshot: what a build does before a step
// needs its parent's filesystem (or while it pulls the layer), and `builder run` before it starts
// a container on an image.

import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Digest } from '../oci/types.js';
import { applyLayer } from './apply.js';
import { SnapshotExistsError, type LocalSnapshotter } from './store.js';

/** A layer blob and the uncompressed digest its image promises. */
export interface UnpackableLayer {
  digest: Digest;
  diffID: Digest;
  mediaType: string;
  /** The blob's size: a large layer is written by a thread of its own (see applyLayer). */
  size?: number;
}

export interface UnpackOptions {
  /**
   * For a blob unpacked as it downloads: settles once the blob is verified and stored. The
   * snapshot is committed only then.
   */
  stored?: Promise<unknown>;
  /** Stops the unpack midway, as it stops a download. */
  signal?: AbortSignal;
}

/**
 * Makes committed snapshot `name` (the layer's ChainID) by applying `blob` on top of committed
 * `parent`, checking the layer's diffID. Another process unpacking the same chain meanwhile is
 * fine: a ChainID names content, so its snapshot serves as well. Nothing is left on failure.
 */
export async function unpackLayer(sn: LocalSnapshotter, name: string, parent: string | undefined, layer: UnpackableLayer, blob: Readable, opts: UnpackOptions = {}): Promise<void> {
  const key = `extract-${randomBytes(8).toString('hex')}`;
  const { signal } = opts;
  const stop = (): void => void blob.destroy(signal?.reason as Error);
  // Stopped while the snapshot is prepared, the blob errors before applyLayer reads it: unheard,
  // that error would end the process (applyLayer, once reading, hears it as well).
  blob.on('error', () => undefined);
  signal?.addEventListener('abort', stop, { once: true });
  try {
    signal?.throwIfAborted();
    await sn.prepare(key, parent);
    const { usage } = await applyLayer(await sn.layout(key), blob, layer.mediaType, { layerName: layer.digest, diffID: layer.diffID, size: layer.size });
    await opts.stored;
    // Counted while it was written: nobody walks the tree later to know its size.
    await sn.commit(name, key, usage ? { usage } : {});
  } catch (err) {
    blob.destroy();
    await sn.remove(key).catch(() => undefined);
    if (!(err instanceof SnapshotExistsError)) throw err;
  } finally {
    signal?.removeEventListener('abort', stop);
  }
}

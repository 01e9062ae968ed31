// Unpacking one layer of a chain into its committed snapshot: what a build does before a step
// needs its parent's filesystem, and `builder run` before it starts a container on an image.

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
}

/**
 * Makes committed snapshot `name` (the layer's ChainID) by applying `layer` on top of committed
 * `parent`, unless it exists. Another process unpacking the same chain meanwhile is fine: a
 * ChainID names content, so its snapshot serves as well. Nothing is left on failure.
 */
export async function unpackLayer(sn: LocalSnapshotter, name: string, parent: string | undefined, layer: UnpackableLayer, blob: () => Readable): Promise<void> {
  if (await sn.stat(name)) return;
  const key = `extract-${randomBytes(8).toString('hex')}`;
  await sn.prepare(key, parent);
  try {
    const { diffID } = await applyLayer(await sn.layout(key), blob(), layer.mediaType);
    if (diffID !== layer.diffID) throw new Error(`layer ${layer.digest}: uncompressed digest ${diffID} does not match ${layer.diffID}`);
    await sn.commit(name, key);
  } catch (err) {
    await sn.remove(key).catch(() => undefined);
    if (!(err instanceof SnapshotExistsError)) throw err;
  }
}

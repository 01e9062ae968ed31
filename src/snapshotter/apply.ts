// Applying a layer blob (tar, gzip or zstd) to an active snapshot.
//
// overlayfs: entries are written straight into the snapshot's upper dir (no mount), OCI
// whiteouts become overlay whiteouts (`.wh.x` → char device 0/0 at x, `.wh..wh..opq` →
// trusted.overlay.opaque=y on the dir). native: entries go into the full tree and whiteouts
// delete what they name. Both give the merged view overlayfs would (a root `.wh..wh..opq` is
// ignored).
//
// Reading the blob is layer-reader.ts; writing its entries into the tree, with containerd's
// safety rules (nothing is ever written outside the snapshot), is apply-entries.ts.

import { statSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Digest } from '../oci/types.js';
import { LayerSecurityError } from './apply-entries.js';
import { layerEntryOf, readLayerEntries } from './layer-reader.js';
import { layerWriter } from './layer-writer.js';
import type { SnapshotLayout } from './store.js';
import type { Usage } from './types.js';

export { LayerSecurityError } from './apply-entries.js';

/** The uncompressed stream did not hash to the diffID the image config promises. */
export class DiffIDMismatchError extends Error {
  constructor(readonly layer: string | undefined, readonly expected: Digest, readonly actual: Digest) {
    super(`${layer !== undefined ? `layer ${layer}: ` : ''}uncompressed digest ${actual} does not match diff_id ${expected}`);
    this.name = 'DiffIDMismatchError';
  }
}

export interface ApplyLayerOptions {
  /** Told about entries that were skipped (device nodes that cannot be made, odd xattrs...). */
  onWarning?: (message: string) => void;
  /**
   * Names the layer in errors. Default: the blob's digest when `layer` is a file stream of a
   * content store blob (`…/sha256/<hex>`), else the file's path.
   */
  layerName?: string;
  /** The diff_id from the image config: the apply fails (before it is finished) on a mismatch. */
  diffID?: Digest;
  /**
   * The blob's size, when known (else a content-store file's size is looked up). A layer of
   * WRITER_THREAD_MIN_BYTES or more is written by a thread of its own (layer-writer.ts), which
   * creates its files while this thread reads, inflates, hashes and parses; a smaller one, or
   * one of unknown size, on this thread: starting a thread costs more than it would save.
   */
  size?: number;
  /**
   * Overrides that choice: a script (the compiled apply-worker.js) writes the layer on a thread
   * running it, whatever the size; `false` on the calling thread.
   */
  writerScript?: URL | false;
}

/** Compressed bytes from which a layer gets a writer thread: below, its start (~0.1 s of CPU) outweighs the overlap. */
export const WRITER_THREAD_MIN_BYTES = 8 * 1024 * 1024;

/**
 * Unpacks a layer blob into an active snapshot and returns its diffID (sha256 of the
 * uncompressed tar, computed on the way), and the snapshot's disk use when it could be counted
 * on the way (a layer written into an empty tree that removes nothing). The compression is
 * detected from the content.
 * `target` is where the snapshot lives (LocalSnapshotter.layout): like containerd's
 * Applier.Apply(desc, mounts), applying needs the snapshot's directories, not the snapshotter.
 * Unsafe entries reject with a LayerSecurityError; the snapshot should then be removed.
 */
export async function applyLayer(
  target: SnapshotLayout,
  layer: Readable | NodeJS.ReadableStream,
  mediaType: string,
  opts: ApplyLayerOptions = {},
): Promise<{ diffID: Digest; usage?: Usage }> {
  if (target.kind !== 'active') throw new Error(`cannot apply a layer to ${target.kind} snapshot ${JSON.stringify(target.key)}`);
  const reader = await readLayerEntries(layer, mediaType);
  const layerName = opts.layerName ?? nameOfStream(layer);
  const warn = opts.onWarning ?? (() => undefined);
  const size = opts.size ?? sizeOfFileStream(layer);
  const large = size !== undefined && size >= WRITER_THREAD_MIN_BYTES;
  const writer = layerWriter(target, warn, opts.writerScript ?? (large ? undefined : false));
  let digest: Digest;
  let usage: Usage | undefined;
  try {
    for await (const entry of reader.entries) {
      await writer.write(layerEntryOf(entry.header, warn), entry);
    }
    await reader.done;
    digest = reader.diffID();
    if (opts.diffID !== undefined && digest !== opts.diffID) throw new DiffIDMismatchError(layerName, opts.diffID, digest);
    usage = await writer.finish();
  } catch (err) {
    reader.destroy();
    await reader.done.catch(() => undefined);
    await writer.abort();
    if (err instanceof LayerSecurityError) err.withLayer(layerName);
    throw err;
  }
  return usage ? { diffID: digest, usage } : { diffID: digest };
}

function sizeOfFileStream(layer: Readable | NodeJS.ReadableStream): number | undefined {
  const path = (layer as { path?: unknown }).path;
  return typeof path === 'string' ? statSync(path, { throwIfNoEntry: false })?.size : undefined;
}

/** `sha256:<hex>` for a content-store blob stream, the path for another file stream. */
function nameOfStream(layer: Readable | NodeJS.ReadableStream): string | undefined {
  const path = (layer as { path?: unknown }).path;
  if (typeof path !== 'string') return undefined;
  const m = /\/sha256\/([0-9a-f]{64})$/.exec(path);
  return m ? `sha256:${m[1]}` : path;
}


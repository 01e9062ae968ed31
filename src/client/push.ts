// `push()`: sends an image of the local store to its registry, as `docker push` does, with the
// layers compressed as a build's push sends them.

import { defaultStateRoot, openState } from '../cache/state.js';
import { distributable, type LayerCompression } from '../exporter/compress.js';
import { pushImage } from '../exporter/push.js';
import type { Digest } from '../oci/types.js';
import { track, type ProgressListener } from '../progress.js';
import { BlobSources } from '../registry/blob-sources.js';
import { parseReference } from '../registry/reference.js';
import { LazyRegistry } from '../source/image.js';
import { openStore } from './images.js';

export interface PushOptions {
  /** A name in the local store (`127.0.0.1:5000/app:1.0`); a name alone means its `latest` tag. */
  ref: string;
  root?: string;
  insecureRegistries?: string[];
  /** Layers built here are stored uncompressed; how they are compressed for the registry (default gzip). */
  compression?: LayerCompression;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface PushResult {
  /** The full name pushed. */
  ref: string;
  /** The manifest's digest in the registry. */
  digest: Digest;
  /** The manifest's size in bytes, as docker prints it. */
  size: number;
}

export async function push(opts: PushOptions): Promise<PushResult> {
  const tag = parseReference(opts.ref);
  if (tag.digest) throw new Error(`push ${opts.ref}: push a tag, not a digest`);
  const name = tag.toString();
  const emit: ProgressListener = opts.onProgress ?? (() => undefined);
  const { image } = await (await openStore(opts.root)).find(name);
  const state = await openState(opts.root ?? defaultStateRoot(), { signal: opts.signal, onWait: (message) => emit({ type: 'warning', message }) });
  const registry = new LazyRegistry(state, { insecureRegistries: opts.insecureRegistries, signal: opts.signal });
  try {
    const built = { config: image.config, configDescriptor: image.manifest.config, manifest: image.manifest, manifestDescriptor: image.manifestDescriptor };
    const shipped = await track(emit, { id: 'compress', name: 'compressing layers' }, () => distributable(state.store, state.root, built, opts.compression));
    const target = { store: state.store, registry: await registry.get(), sources: new BlobSources(state.root), signal: opts.signal };
    const digest = await track(emit, { id: `push:${name}`, name: `pushing ${name}` }, () => pushImage(target, shipped, tag));
    return { ref: name, digest, size: shipped.manifestDescriptor.size };
  } finally {
    await registry.close();
    await state.release({ clean: true });
  }
}

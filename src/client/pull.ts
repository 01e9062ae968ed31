// `pull()`: brings an image from its registry into the local store and names it there, as
// `docker pull` does, so later builds use it offline. Builds pull their base images the same way.

import { Images, LazyRegistry } from '../source/image.js';
import { defaultStateRoot, openState } from '../cache/state.js';
import type { Digest, Platform } from '../definition/index.js';
import { hostPlatform, toPlatform } from '../oci/platform.js';
import { parseReference } from '../registry/reference.js';
import type { ProgressListener } from '../progress.js';

export interface PullOptions {
  /** `alpine`, `user/app:1.2`, `host:5000/team/app@sha256:…`; a name alone means its `latest` tag. */
  ref: string;
  /** Which entry of a multi-platform image, `linux/arm64` or as an object (default: this machine's). */
  platform?: Platform | string;
  /** State directory; default as for `build()`. */
  root?: string;
  insecureRegistries?: string[];
  /** Pull-through mirrors tried before Docker Hub for docker.io images (falling back to it). */
  registryMirrors?: string[];
  /** A step per layer: `cached` when the store has it already, else its download. */
  onProgress?: ProgressListener;
  signal?: AbortSignal;
}

export interface PullResult {
  /** The full name pinned to what was pulled: `docker.io/library/alpine:latest@sha256:…`. */
  ref: string;
  manifestDigest: Digest;
  configDigest: Digest;
}

export async function pull(opts: PullOptions): Promise<PullResult> {
  const platform = opts.platform === undefined ? hostPlatform() : toPlatform(opts.platform);
  // Checked before the state directory is taken: a bad name is the user's error, not the store's.
  const name = parseReference(opts.ref).toString();
  const state = await openState(opts.root ?? defaultStateRoot(), { signal: opts.signal, onWait: (message) => opts.onProgress?.({ type: 'warning', message }) });
  const registry = new LazyRegistry(state, { insecureRegistries: opts.insecureRegistries, registryMirrors: opts.registryMirrors, signal: opts.signal });
  try {
    // Like `docker pull`, ask the registry what the tag names now, even when a copy is local.
    const images = new Images(state, registry, { forcePull: true, signal: opts.signal, onLayer: opts.onProgress });
    const { ref } = await images.resolve(name, platform);
    await images.pull(ref, platform);
    const manifestDigest = parseReference(ref).digest as Digest;
    const manifest = await state.store.readJson<{ config: { digest: Digest } }>(manifestDigest);
    return { ref, manifestDigest, configDigest: manifest.config.digest };
  } finally {
    await registry.close();
    // A pull starts no container and mounts nothing: it leaves nothing to sweep.
    await state.release({ clean: true });
  }
}

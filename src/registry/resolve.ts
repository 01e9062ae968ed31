// Resolving a reference to one platform's image: an index (or manifest list) is walked to the
// entry that best matches the platform, nested indexes included, and the chosen manifest is
// completed with its verified config.

import { isSha256Digest, sha256 } from '../oci/digest.js';
import { formatPlatform, isAttestation, normalizePlatform, platformRank, selectManifest } from '../oci/platform.js';
import {
  isIndexMediaType,
  isManifestMediaType,
  type Descriptor,
  type Digest,
  type ImageConfigFile,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from '../oci/types.js';
import { fetchBlob } from './blob-reader.js';
import { ContentVerificationError, PlatformNotFoundError, UnsupportedManifestError } from './errors.js';
import { assertDigest, fetchManifest, parseJson, type ContentCache, type FetchedManifest } from './manifest.js';
import type { ImageReference } from './reference.js';
import { readLimited, type Requester } from './request.js';

const MAX_CONFIG_BYTES = 32 * 1024 * 1024;
const MAX_INDEX_DEPTH = 4;

export interface ResolvedImage {
  /** The reference asked for, with the digest of the platform manifest (the tag is kept). */
  ref: ImageReference;
  manifestDigest: Digest;
  manifest: ImageManifest;
  manifestBytes: Buffer;
  mediaType: string;
  config: ImageConfigFile;
  configDigest: Digest;
  configBytes: Buffer;
  /** Digest of the index the manifest was picked from, when the reference named one. */
  indexDigest?: Digest;
}

/**
 * Resolves `ref` to the manifest and config for `platform`: an index or manifest list is
 * narrowed to the best matching entry; every document is verified against its digest.
 */
export async function resolveImage(rq: Requester, cache: ContentCache | undefined, ref: ImageReference, platform: Platform): Promise<ResolvedImage> {
  return resolveFrom(rq, cache, ref, await fetchManifest(rq, cache, ref), platform, undefined, 0);
}

async function resolveFrom(
  rq: Requester,
  cache: ContentCache | undefined,
  ref: ImageReference,
  fetched: FetchedManifest,
  platform: Platform,
  indexDigest: Digest | undefined,
  depth: number,
): Promise<ResolvedImage> {
  if (isManifestMediaType(fetched.mediaType)) return loadImage(rq, cache, ref, fetched, indexDigest);
  if (!isIndexMediaType(fetched.mediaType)) {
    throw new UnsupportedManifestError(`unsupported manifest media type "${fetched.mediaType}" for ${ref}`, ref.registry);
  }
  if (depth >= MAX_INDEX_DEPTH) throw new UnsupportedManifestError(`image index nesting too deep for ${ref}`, ref.registry);
  const index = parseJson<ImageIndex>(fetched.bytes, `index of ${ref}`, ref.registry);
  if (!Array.isArray(index.manifests)) throw new UnsupportedManifestError(`index of ${ref} has no manifests list`, ref.registry);
  const top = indexDigest ?? fetched.digest;

  const chosen = selectManifest(index.manifests, platform);
  if (chosen) {
    assertDigest(ref, chosen.digest);
    const child = await fetchManifest(rq, cache, ref.withDigest(chosen.digest), chosen);
    return resolveFrom(rq, cache, ref, child, platform, top, depth + 1);
  }
  // Entries without a platform (as some tools write them) count if their config matches, as in containerd.
  for (const desc of index.manifests) {
    if (desc.platform || isAttestation(desc) || !isSha256Digest(desc.digest)) continue;
    const child = await fetchManifest(rq, cache, ref.withDigest(desc.digest), desc);
    if (!isManifestMediaType(child.mediaType)) continue;
    const image = await loadImage(rq, cache, ref, child, top);
    if (platformRank(platform, image.config) !== undefined) return image;
  }
  throw platformNotFound(ref, index, platform);
}

/** Completes a single-platform manifest with its verified config. */
async function loadImage(
  rq: Requester,
  cache: ContentCache | undefined,
  ref: ImageReference,
  fetched: FetchedManifest,
  indexDigest: Digest | undefined,
): Promise<ResolvedImage> {
  const manifest = parseJson<ImageManifest>(fetched.bytes, `manifest of ${ref}`, ref.registry);
  validateManifest(ref, manifest);
  const configBytes = await fetchConfig(rq, cache, ref, manifest.config);
  const config = parseJson<ImageConfigFile>(configBytes, `image config of ${ref}`, ref.registry);
  const resolved: ResolvedImage = {
    ref: ref.withDigest(fetched.digest),
    manifestDigest: fetched.digest,
    manifest,
    manifestBytes: fetched.bytes,
    mediaType: fetched.mediaType,
    config,
    configDigest: manifest.config.digest,
    configBytes,
  };
  if (indexDigest) resolved.indexDigest = indexDigest;
  return resolved;
}

/** The image config blob, from the content cache when it holds it, verified either way. */
async function fetchConfig(rq: Requester, cache: ContentCache | undefined, ref: ImageReference, desc: Descriptor): Promise<Buffer> {
  const limit = MAX_CONFIG_BYTES;
  if (desc.size > limit) {
    throw new UnsupportedManifestError(`blob ${desc.digest} of ${ref} is ${desc.size} bytes, over the ${limit} byte limit`, ref.registry);
  }
  const cached = await cache?.get(desc.digest);
  if (cached && cached.length === desc.size && sha256(cached) === desc.digest) return cached;
  const bytes = await readLimited(await fetchBlob(rq, ref, desc), limit, `blob ${desc.digest}`, ref.registry);
  const digest = sha256(bytes);
  if (digest !== desc.digest || bytes.length !== desc.size) {
    throw new ContentVerificationError(
      `blob ${desc.digest} of ${ref} does not match: got ${digest} (${bytes.length} bytes, expected ${desc.size})`,
      ref.registry,
    );
  }
  await cache?.put(digest, bytes);
  return bytes;
}

function validateManifest(ref: ImageReference, manifest: ImageManifest): void {
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw new UnsupportedManifestError(`manifest of ${ref} lacks config or layers`, ref.registry);
  }
  assertDigest(ref, manifest.config.digest);
  for (const layer of manifest.layers) assertDigest(ref, layer.digest);
}

function platformNotFound(ref: ImageReference, index: ImageIndex, platform: Platform): PlatformNotFoundError {
  const available = index.manifests
    .filter((d) => d.platform && !isAttestation(d))
    .map((d) => formatPlatform(normalizePlatform(d.platform as Platform)));
  return new PlatformNotFoundError(
    `no image for platform ${formatPlatform(normalizePlatform(platform))} in ${ref} (available: ${available.join(', ') || 'none'})`,
    ref.registry,
  );
}

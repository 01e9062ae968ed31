// `--cache-to`: the solved steps' cache records, shared in BuildKit's cache manifest format. A
// registry or local export is an OCI image index whose entries are the layer blobs (annotated
// with their uncompressed digest) and one cache config blob; an inline export puts the cache
// config, base64, under `moby.buildkit.cache.v0` in the pushed image's config, its layers being
// the image's own.

import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayerRecord } from '../cache/cache-index.js';
import type { ContentStore } from '../cache/content-store.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  encodeCacheConfig,
  INLINE_CACHE_KEY,
  UNCOMPRESSED_ANNOTATION,
  type CacheConfigRecord,
  type RemoteRecord,
} from '../cache/remote-cache.js';
import { canonicalJson } from '../oci/digest.js';
import { MediaType, type Descriptor, type ImageIndex, type ImageManifest } from '../oci/types.js';
import { compressedLayers, type LayerCompression } from './compress.js';
import type { BuiltImage } from './image.js';
import { writeFileAtomic } from '../util/write-file.js';

/**
 * Where a build shares its cache. `mode` `min` (default) shares the final stage's steps, `max`
 * every step the image depends on, other stages' too. `compression` is that of layers stored
 * uncompressed here (default gzip).
 */
export type CacheExport =
  | { type: 'registry'; ref: string; mode?: 'min' | 'max'; compression?: LayerCompression }
  | { type: 'local'; dest: string; tag?: string; mode?: 'min' | 'max'; compression?: LayerCompression }
  | { type: 'inline' };

/** A cache manifest in the content store: the index and every blob it names. */
export interface CacheManifest {
  index: Descriptor;
  blobs: Descriptor[];
}

/** Stores the cache manifest of `records`, compressing their layers as asked (each made once). */
export async function storeCacheManifest(
  store: ContentStore,
  stateRoot: string,
  records: readonly RemoteRecord[],
  opts: { compression?: LayerCompression; createdAt: string },
): Promise<CacheManifest> {
  const distinct = new Map<string, LayerRecord>();
  for (const r of records) for (const l of r.layers) distinct.set(l.digest, l);
  const compression = opts.compression ?? 'gzip';
  const originals = [...distinct.values()];
  const shipped = compression === 'uncompressed' ? originals : await compressedLayers(store, stateRoot, originals, compression);
  const shippedOf = new Map(originals.map((l, i) => [l.digest, { ...l, ...pick(shipped[i]!) }]));
  const exported = records.map((r) => ({ key: r.key, layers: r.layers.map((l) => shippedOf.get(l.digest)!) }));

  const config = await store.putBytes(canonicalJson(encodeCacheConfig(exported, opts.createdAt)));
  const layers: Descriptor[] = [...new Map([...shippedOf.values()].map((l) => [l.digest, l])).values()].map((l) => ({
    ...pick(l),
    annotations: { [UNCOMPRESSED_ANNOTATION]: l.diffID },
  }));
  const configDescriptor: Descriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, ...config };
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [...layers, configDescriptor] };
  const indexBlob = await store.putBytes(canonicalJson(index));
  return { index: { mediaType: MediaType.OciIndex, ...indexBlob }, blobs: [...layers, configDescriptor] };
}

/**
 * Writes `cache` into the OCI layout `dest` under `tag` (replacing the tag's earlier entry): blobs
 * first, `index.json` last and atomically, so an interrupted export leaves the previous cache.
 */
export async function writeCacheLayout(store: ContentStore, cache: CacheManifest, dest: string, tag: string): Promise<void> {
  const blobsDir = join(dest, 'blobs', 'sha256');
  await mkdir(blobsDir, { recursive: true });
  for (const blob of [...cache.blobs, cache.index]) {
    const path = join(blobsDir, blob.digest.slice('sha256:'.length));
    if ((await stat(path).catch(() => undefined))?.size === blob.size) continue;
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await copyFile(store.path(blob.digest), tmp);
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }
  await writeFile(join(dest, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const indexPath = join(dest, 'index.json');
  const previous = await readFile(indexPath, 'utf8').then(
    (text) => JSON.parse(text) as ImageIndex,
    () => undefined,
  );
  const REF_NAME = 'org.opencontainers.image.ref.name';
  const others = (previous?.manifests ?? []).filter((m) => m.annotations?.[REF_NAME] !== tag);
  const layout: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [...others, { ...cache.index, annotations: { [REF_NAME]: tag } }] };
  await writeFileAtomic(indexPath, JSON.stringify(layout));
}

/**
 * `image` (as pushed: layers compressed) with an inline cache of `records` in its config. As in
 * BuildKit, an inline cache is the records alone: their layers are the image's, layer i on top
 * of layer i-1, so only records whose layers are a prefix of the image's fit (min mode).
 */
export async function withInlineCache(store: ContentStore, image: BuiltImage, records: readonly RemoteRecord[], createdAt: string): Promise<BuiltImage> {
  const diffIDs = image.config.rootfs.diff_ids;
  const inline = new Map<string, CacheConfigRecord>();
  for (const r of records) {
    if (r.layers.length === 0 || r.layers.length > diffIDs.length || !r.layers.every((l, i) => l.diffID === diffIDs[i])) continue;
    if (!inline.has(r.key)) inline.set(r.key, { digest: r.key, layers: [{ layer: r.layers.length - 1, createdAt: r.layers.at(-1)!.createdAt ?? createdAt }] });
  }
  const cacheRecords = Buffer.from(canonicalJson([...inline.values()])).toString('base64');
  const config = { ...image.config, [INLINE_CACHE_KEY]: cacheRecords };
  const configBlob = await store.putBytes(canonicalJson(config));
  const configDescriptor: Descriptor = { ...image.configDescriptor, ...configBlob };
  const manifest: ImageManifest = { ...image.manifest, config: configDescriptor };
  const manifestBlob = await store.putBytes(canonicalJson(manifest));
  return { config, configDescriptor, manifest, manifestDescriptor: { ...image.manifestDescriptor, ...manifestBlob } };
}

function pick(d: { mediaType: string; digest: Descriptor['digest']; size: number }): { mediaType: string; digest: Descriptor['digest']; size: number } {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size };
}

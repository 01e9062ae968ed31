// The cache shared between machines (`--cache-to` / `--cache-from`), in BuildKit's container
// format: a cache config (`application/vnd.buildkit.cacheconfig.v0`) listing layer blobs as
// chains (each layer names its parent's index) and records (a cache key and the top layer of its
// result). builder's cache keys are its own, so its records only ever match builder's builds; the
// container (media types, JSON fields, index layout) is BuildKit's, readable by the same tools.
//
// This file is the format alone: records ⇄ cache config. Moving the blobs is the exporter's
// (src/exporter/cache-export.ts) and the importer's (src/source/cache-import.ts) business.

import type { Digest } from '../oci/types.js';
import type { LayerRecord } from './cache-index.js';

export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.buildkit.cacheconfig.v0';
/** The image config key of an inline cache: the cache config's JSON, base64 (as Go marshals []byte). */
export const INLINE_CACHE_KEY = 'moby.buildkit.cache.v0';
/** The descriptor annotation naming a layer's uncompressed digest (containerd's). */
export const UNCOMPRESSED_ANNOTATION = 'containerd.io/uncompressed';

/** One cache key and the layer chain a step produced under it. */
export interface RemoteRecord {
  key: Digest;
  layers: LayerRecord[];
}

export interface CacheConfig {
  layers: CacheConfigLayer[];
  records: CacheConfigRecord[];
}

export interface CacheConfigLayer {
  blob: Digest;
  /** Index of the layer below in `layers`; -1 for a bottom layer (BuildKit omits 0, so absent means 0). */
  parent?: number;
  annotations?: { mediaType?: string; diffID?: Digest; size?: number; createdAt?: string };
}

export interface CacheConfigRecord {
  digest: Digest;
  /** The results: the index of the top layer of each (BuildKit's JSON calls them `layers`). */
  layers?: Array<{ layer: number; createdAt?: string }>;
  inputs?: unknown[];
}

/** The cache config of `records`, each distinct layer chain written once. */
export function encodeCacheConfig(records: readonly RemoteRecord[], createdAt: string): CacheConfig {
  const layers: CacheConfigLayer[] = [];
  const indexOf = new Map<string, number>();
  const chainTop = (chain: LayerRecord[]): number => {
    let parent = -1;
    for (const layer of chain) {
      const id = `${parent} ${layer.digest}`;
      let index = indexOf.get(id);
      if (index === undefined) {
        index = layers.length;
        indexOf.set(id, index);
        layers.push({ blob: layer.digest, parent, annotations: { mediaType: layer.mediaType, diffID: layer.diffID, size: layer.size, createdAt: layer.createdAt ?? createdAt } });
      }
      parent = index;
    }
    return parent;
  };
  const seen = new Set<Digest>();
  const out: CacheConfigRecord[] = [];
  for (const { key, layers: chain } of records) {
    // A step with no layers (scratch) has nothing to share.
    if (seen.has(key) || chain.length === 0) continue;
    seen.add(key);
    out.push({ digest: key, layers: [{ layer: chainTop(chain), createdAt: chain.at(-1)?.createdAt ?? createdAt }] });
  }
  return { layers, records: out };
}

/**
 * The records of a cache config, keyed by cache key. `describe` completes a layer whose
 * annotations lack its media type, size or uncompressed digest (an older BuildKit's config, or an
 * inline cache: the image manifest and config know them); a record whose layers cannot be
 * described, or whose chain is broken, is left out.
 */
export function decodeCacheConfig(config: CacheConfig, describe: (blob: Digest) => Partial<LayerRecord> | undefined): Map<Digest, LayerRecord[]> {
  const chains = new Map<number, LayerRecord[] | undefined>();
  const chainOf = (index: number, depth = 0): LayerRecord[] | undefined => {
    if (chains.has(index)) return chains.get(index);
    const layer = config.layers[index];
    let chain: LayerRecord[] | undefined;
    if (layer && depth <= config.layers.length) {
      const known = describe(layer.blob) ?? {};
      const a = layer.annotations ?? {};
      const record = {
        digest: layer.blob,
        diffID: a.diffID ?? known.diffID,
        size: a.size ?? known.size,
        mediaType: a.mediaType ?? known.mediaType,
        ...(typeof a.createdAt === 'string' && { createdAt: a.createdAt }),
      };
      const parent = layer.parent ?? 0;
      const below = parent < 0 ? [] : chainOf(parent, depth + 1);
      if (below && record.diffID && record.size !== undefined && record.mediaType) chain = [...below, record as LayerRecord];
    }
    chains.set(index, chain);
    return chain;
  };
  const records = new Map<Digest, LayerRecord[]>();
  for (const record of config.records ?? []) {
    const top = record.layers?.[0]?.layer;
    let chain = top === undefined ? undefined : chainOf(top);
    // An inline cache's layers have no annotations: the record says when its result was made.
    const made = record.layers?.[0]?.createdAt;
    if (chain && chain.at(-1)!.createdAt === undefined && typeof made === 'string') chain = [...chain.slice(0, -1), { ...chain.at(-1)!, createdAt: made }];
    if (chain && !records.has(record.digest)) records.set(record.digest, chain);
  }
  return records;
}

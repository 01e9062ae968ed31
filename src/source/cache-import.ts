// `--cache-from`: cache records shared by other machines, read before the solve starts. Only the
// small documents are read up front (the index and the cache config, or an image's manifest and
// config for an inline cache); each layer blob is fetched, verified, the first time the solver or
// the exporter needs its bytes, from the source that listed it.

import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { LayerRecord } from '../cache/cache-index.js';
import type { ContentStore } from '../cache/content-store.js';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  decodeCacheConfig,
  INLINE_CACHE_KEY,
  UNCOMPRESSED_ANNOTATION,
  type CacheConfig,
  type CacheConfigRecord,
} from '../cache/remote-cache.js';
import { isIndexMediaType, type Descriptor, type Digest, type ImageIndex, type Platform } from '../oci/types.js';
import type { BlobSources } from '../registry/blob-sources.js';
import type { RegistryClient } from '../registry/client.js';
import { parseReference } from '../registry/reference.js';
import { track, type ProgressListener } from '../progress.js';
import type { ImportedCache } from '../solver/solver.js';
import { OciLayout, readVerified } from './oci-layout.js';

/**
 * Where a build reads shared cache from. `registry`: a cache manifest pushed with
 * `--cache-to type=registry`, or an image pushed with `--cache-to type=inline`. `local`: an OCI
 * layout written with `--cache-to type=local` (`tag` picks its entry, default `latest`).
 */
export type CacheImport = { type: 'registry'; ref: string } | { type: 'local'; src: string; tag?: string };

/** Opens a blob of one source; the caller verifies what it reads. */
type BlobOpener = (desc: Descriptor) => Promise<Readable>;

/** The records of every `--cache-from` source, first source first; blobs fetched on demand. */
export class CacheImports implements ImportedCache {
  private readonly records = new Map<Digest, LayerRecord[]>();
  private readonly openers = new Map<Digest, { from: FoundCache; source: string }>();
  private readonly fetches = new Map<Digest, Promise<void>>();

  constructor(
    private readonly store: ContentStore,
    private readonly emit: ProgressListener = () => undefined,
  ) {}

  /**
   * Reads each source's cache config. A source that does not exist yet (the first build of a
   * branch) is a warning, as in BuildKit; any other failure fails the build, naming the source.
   */
  static async read(store: ContentStore, sources: readonly CacheImport[], io: ImportIO): Promise<CacheImports> {
    const imports = new CacheImports(store, io.emit);
    for (const source of sources) {
      const name = source.type === 'registry' ? source.ref : source.src;
      const read = source.type === 'registry' ? readRegistryCache(source.ref, io) : readLocalCache(source.src, source.tag ?? 'latest');
      const found = await track(io.emit ?? (() => undefined), { id: `cache-from:${name}`, name: `importing cache manifest from ${name}` }, () => read).catch(
        (err: unknown) => {
          if ((err as { name?: string }).name === 'NotFoundError' || (err as NodeJS.ErrnoException).code === 'ENOENT') {
            io.emit?.({ type: 'warning', message: `--cache-from ${name}: not found, building without it` });
            return undefined;
          }
          if (err instanceof NoCacheError) {
            io.emit?.({ type: 'warning', message: `--cache-from ${name}: ${err.message}, building without it` });
            return undefined;
          }
          throw new Error(`--cache-from ${name}: ${(err as Error).message}`, { cause: err });
        },
      );
      if (found) imports.add(found, name);
    }
    return imports;
  }

  private add(found: FoundCache, source: string): void {
    for (const [key, layers] of found.records) {
      if (this.records.has(key)) continue;
      this.records.set(key, layers);
      for (const layer of layers) if (!this.openers.has(layer.digest)) this.openers.set(layer.digest, { from: found, source });
    }
  }

  async lookup(key: Digest): Promise<LayerRecord[] | undefined> {
    const layers = this.records.get(key);
    if (!layers) return undefined;
    for (const layer of layers) if (!this.openers.has(layer.digest) && !(await this.store.has(layer.digest))) return undefined;
    return layers;
  }

  async fetch(layers: LayerRecord[]): Promise<void> {
    await Promise.all(layers.map((layer) => this.fetchOne(layer)));
  }

  private fetchOne(layer: LayerRecord): Promise<void> {
    let pending = this.fetches.get(layer.digest);
    if (!pending) {
      pending = (async () => {
        if (await this.store.has(layer.digest)) return;
        const opener = this.openers.get(layer.digest);
        if (!opener) throw new Error(`blob ${layer.digest} is in no imported cache`);
        const { from, source } = opener;
        const step = { id: `cache:${layer.digest}`, name: `fetching cached layer ${layer.digest.slice(7, 19)} (${(layer.size / 1e6).toFixed(1)} MB)` };
        await track(this.emit, step, async () => {
          const desc = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
          await this.store.ingest(await from.open(desc), { digest: layer.digest, size: layer.size, source: `${source}@${layer.digest}` });
        });
        await from.fetched?.(layer.digest);
      })();
      this.fetches.set(layer.digest, pending);
      pending.catch(() => this.fetches.delete(layer.digest));
    }
    return pending;
  }
}

/** An image that carries no cache: nothing to import, as BuildKit treats it. */
class NoCacheError extends Error {}

/** What reading from a registry needs: its client (made on first use), the build's platform for an inline cache. */
export interface ImportIO {
  registry: () => Promise<RegistryClient>;
  /** Where blobs pulled from a registry are remembered for cross-repository mounts. */
  blobSources: BlobSources;
  platform: Platform;
  emit?: ProgressListener;
}

interface FoundCache {
  records: Map<Digest, LayerRecord[]>;
  open: BlobOpener;
  /** Called once a blob is stored: a registry source remembers it, so a push there mounts it. */
  fetched?: (digest: Digest) => Promise<void>;
}

async function readRegistryCache(refText: string, io: ImportIO): Promise<FoundCache> {
  const ref = parseReference(refText);
  const registry = await io.registry();
  const open: BlobOpener = (desc) => registry.fetchBlob(ref, desc);
  const fetched = (digest: Digest) => io.blobSources.record(ref, [digest]);
  const top = await registry.fetchManifest(ref);
  const index = isIndexMediaType(top.mediaType) ? (JSON.parse(top.bytes.toString('utf8')) as ImageIndex) : undefined;
  const configDesc = index?.manifests.find((m) => m.mediaType === CACHE_CONFIG_MEDIA_TYPE);
  if (index && configDesc) {
    const config = parseCacheConfig(await readVerified(await open(configDesc), configDesc), refText);
    return { records: decodeCacheConfig(config, describeFrom(index.manifests)), open, fetched };
  }
  // Not a cache manifest: an image, whose config may carry an inline cache.
  const image = await registry.resolve(ref, io.platform);
  const inline = (image.config as unknown as Record<string, unknown>)[INLINE_CACHE_KEY];
  if (typeof inline !== 'string') throw new NoCacheError('an image without an inline cache');
  // The records alone: their layers are the image's, each on top of the one before (as BuildKit reads them).
  const records = parseJson(Buffer.from(inline, 'base64'), `${refText} (inline cache)`);
  if (!Array.isArray(records)) throw new Error(`${refText}: the inline cache is not a list of records`);
  const diffIDs = image.config.rootfs.diff_ids;
  const layers = image.manifest.layers.map((l, i) => ({ ...l, annotations: { ...l.annotations, [UNCOMPRESSED_ANNOTATION]: diffIDs[i] ?? '' } }));
  const config: CacheConfig = { layers: layers.map((l, i) => ({ blob: l.digest, parent: i - 1 })), records: records as CacheConfigRecord[] };
  return {
    records: decodeCacheConfig(config, describeFrom(layers)),
    open: (desc) => registry.fetchBlob(image.ref, desc),
    fetched: (digest) => io.blobSources.record(image.ref, [digest]),
  };
}

async function readLocalCache(dir: string, tag: string): Promise<FoundCache> {
  const layout = new OciLayout(dir);
  const entry = await layout.entry(tag);
  if (!entry) throw new Error(`${join(dir, 'index.json')} names no cache "${tag}"`);
  const index = JSON.parse((await layout.readDocument(entry)).toString('utf8')) as ImageIndex;
  const configDesc = index.manifests.find((m) => m.mediaType === CACHE_CONFIG_MEDIA_TYPE);
  if (!configDesc) throw new Error(`${dir}: the index of "${tag}" has no ${CACHE_CONFIG_MEDIA_TYPE}`);
  const config = parseCacheConfig(await layout.readDocument(configDesc), dir);
  return { records: decodeCacheConfig(config, describeFrom(index.manifests)), open: async (desc) => layout.open(desc) };
}

/** Layer facts from the descriptors that list the blobs (older BuildKit configs carry none). */
function describeFrom(descriptors: readonly Descriptor[]): (blob: Digest) => Partial<LayerRecord> | undefined {
  const byDigest = new Map(descriptors.map((d) => [d.digest, d]));
  return (blob) => {
    const d = byDigest.get(blob);
    const diffID = d?.annotations?.[UNCOMPRESSED_ANNOTATION];
    return d && { mediaType: d.mediaType, size: d.size, ...(diffID?.startsWith('sha256:') ? { diffID: diffID as Digest } : {}) };
  };
}

function parseCacheConfig(bytes: Buffer, source: string): CacheConfig {
  const config = parseJson(bytes, source) as CacheConfig;
  if (!Array.isArray(config?.layers) || !Array.isArray(config.records ?? [])) throw new Error(`${source}: the cache config has no layers list`);
  return config;
}

function parseJson(bytes: Buffer, source: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (err) {
    throw new Error(`${source}: the cache config is not JSON: ${(err as Error).message}`);
  }
}

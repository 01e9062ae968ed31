// Base images: the registry client a build or pull creates on first need, and the image source
// that resolves names and brings their layers into the content store.
//
// src/source owns where the solver's inputs come from: base images (the local image store, else
// their registry) and `ADD <url>` downloads (http.ts). It must not know Dockerfile syntax, nor
// how the solver keys or runs what it provides.

import { pipeline, Transform, type Readable } from 'node:stream';
import pLimit from 'p-limit';
import type { LayerRecord } from '../cache/cache-index.js';
import type { State } from '../cache/state.js';
import type { Digest, Platform } from '../definition/index.js';
import { platformOf } from '../oci/platform.js';
import { MediaType, type Descriptor, type ImageConfigFile, type ImageIndex, type ImageManifest } from '../oci/types.js';
import { BlobSources } from '../registry/blob-sources.js';
import { holdLayerWriter, WRITER_THREAD_MIN_BYTES } from '../snapshotter/index.js';
import type { ContentCache, RegistryClient, RegistryClientOptions } from '../registry/client.js';
import { parseReference, type ImageReference } from '../registry/reference.js';
import { BYTES_INTERVAL_MS, track, type ProgressListener } from '../progress.js';
import type { ImageSource, LayerUnpack, PullUnpacker } from '../solver/solver.js';
import { tee } from '../util/tee.js';

/**
 * The registry client, created on first use: a build whose base images are all local (and that
 * does not push) never loads the registry client, its auth and the HTTP modules.
 */
export class LazyRegistry {
  private client: Promise<RegistryClient> | undefined;

  constructor(
    private readonly state: Pick<State, 'store' | 'images'>,
    private readonly options: Pick<RegistryClientOptions, 'insecureRegistries' | 'registryMirrors' | 'signal'>,
  ) {}

  get(): Promise<RegistryClient> {
    this.client ??= this.create();
    return this.client;
  }

  private async create(): Promise<RegistryClient> {
    const [{ RegistryClient }, { DockerConfigCredentialStore }] = await Promise.all([import('../registry/client.js'), import('../registry/docker-config.js')]);
    const { store, images } = this.state;
    // Manifests and configs in the content store are not fetched again.
    const contentCache: ContentCache = {
      get: async (digest) => ((await store.has(digest)) ? store.readBytes(digest) : undefined),
      put: async (_digest, bytes) => void (await store.putBytes(bytes)),
      pulledBefore: async (ref) => (await images.get(ref.toString())) !== undefined,
    };
    return new RegistryClient({ ...this.options, contentCache, credentials: new DockerConfigCredentialStore() });
  }

  async close(): Promise<void> {
    if (this.client) await (await this.client).close();
  }
}

/**
 * Base images: resolved from the local store when it has them (as Docker does, unless --pull),
 * else from their registry; their layers are pulled into the content store, verified.
 */
export class Images implements ImageSource {
  private readonly fetches = pLimit(3);
  /** Pinned references this build resolved at a registry (to name once pulled), with the index they came from. */
  private readonly fromRegistry = new Map<string, Digest | undefined>();

  constructor(
    private readonly state: State,
    private readonly registry: LazyRegistry,
    private readonly opts: {
      /** Resolve tags at the registry even when the local store has them. */
      forcePull?: boolean;
      signal?: AbortSignal;
      /** Receives a step per layer of a pull (cached when the store has it, else its download) and the download's bytes. */
      onLayer?: ProgressListener;
      /** Where pulled blobs are remembered for cross-repository mounts (one per build: its writes are ordered). */
      blobSources?: BlobSources;
    } = {},
  ) {}

  async resolve(refText: string, platform: Platform): Promise<{ ref: string; config: ImageConfigFile }> {
    const ref = parseReference(refText);
    const name = nameOf(ref);
    if (ref.digest && (await this.state.store.has(ref.digest as Digest))) {
      return { ref: `${name}@${ref.digest}`, config: await this.configOf(ref.digest as Digest) };
    }
    if (!ref.digest && !this.opts.forcePull) {
      // Only an image for this platform: a name pulled for linux/arm64 does not serve linux/amd64.
      const local = await this.state.images.resolve(name, platform, this.state.store);
      if (local && (await this.state.store.has(local.digest))) {
        return { ref: `${name}@${local.digest}`, config: await this.configOf(local.digest) };
      }
    }
    const resolved = await (await this.registry.get()).resolve(ref, platform);
    await this.state.store.putBytes(resolved.manifestBytes);
    await this.state.store.putBytes(resolved.configBytes);
    const pinned = `${name}@${resolved.manifestDigest}`;
    if (ref.tag) {
      this.fromRegistry.set(pinned, resolved.indexDigest);
      // A tag that now names an image whose layers are all here already (re-pushed with a new
      // config, or in another format) is never pulled: named now, or later builds would go on
      // resolving the name to the image it named before.
      await this.local(pinned);
    }
    return { ref: pinned, config: resolved.config };
  }

  async local(pinned: string): Promise<LayerRecord[] | undefined> {
    const digest = parseReference(pinned).digest as Digest;
    if (!(await this.state.store.has(digest))) return undefined;
    const manifest = await this.state.store.readJson<ImageManifest>(digest);
    for (const layer of manifest.layers) if (!(await this.state.store.has(layer.digest))) return undefined;
    const config = await this.state.store.readJson<ImageConfigFile>(manifest.config.digest);
    // Its layers were all here already (another platform's image shares them): named all the same.
    await this.name(pinned, manifest, config);
    return layerRecords(manifest, config);
  }

  async described(pinned: string): Promise<LayerRecord[] | undefined> {
    const digest = parseReference(pinned).digest as Digest;
    if (!(await this.state.store.has(digest))) return undefined;
    const manifest = await this.state.store.readJson<ImageManifest>(digest);
    if (!(await this.state.store.has(manifest.config.digest))) return undefined;
    return layerRecords(manifest, await this.state.store.readJson<ImageConfigFile>(manifest.config.digest));
  }

  /**
   * Brings the image's layers into the content store, downloading a few at once, and with
   * `unpack` into snapshots: a layer it can take as its bytes arrive goes from the socket to the
   * store and the snapshot in one pass, the others from the store once downloaded. Returns once
   * every unpack has settled, so a failed pull leaves no snapshot half made.
   */
  async pull(pinned: string, platform: Platform, _signal?: AbortSignal, unpack?: PullUnpacker): Promise<LayerRecord[]> {
    const ref = parseReference(pinned);
    const digest = ref.digest as Digest;
    if (!(await this.state.store.has(digest))) {
      const resolved = await (await this.registry.get()).resolve(ref, platform);
      await this.state.store.putBytes(resolved.manifestBytes);
      await this.state.store.putBytes(resolved.configBytes);
    }
    const manifest = await this.state.store.readJson<ImageManifest>(digest);
    const config = await this.state.store.readJson<ImageConfigFile>(manifest.config.digest);
    const records = layerRecords(manifest, config);
    const unpacks = unpack?.accept(records) ?? [];
    // The writer thread of its large layers starts with the downloads, not once the first one's bytes arrive.
    const releaseWriter = records.some((r, i) => unpacks[i] && r.size >= WRITER_THREAD_MIN_BYTES) ? holdLayerWriter() : undefined;
    try {
      const downloads = await Promise.allSettled(
        manifest.layers.map((layer, index) =>
          this.fetches(async () => {
            try {
              await this.fetchLayer(ref, layer, unpacks[index]);
            } catch (err) {
              unpacks[index]?.fail(err);
              throw err;
            }
          }),
        ),
      );
      const unpacked = await Promise.allSettled(unpacks.map((u) => u?.done));
      // A download's error first: a corrupt blob explains its failed unpack.
      for (const r of [...downloads, ...unpacked]) if (r.status === 'rejected') throw r.reason;
    } finally {
      releaseWriter?.();
    }
    // Remembered so a push to another repository of this registry can mount them instead of uploading.
    await (this.opts.blobSources ?? new BlobSources(this.state.root)).record(ref, [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]);
    await this.name(pinned, manifest, config);
    return records;
  }

  /** Brings one layer's blob into the store (reported as a step of its own), and gives it to `unpack`. */
  private async fetchLayer(ref: ImageReference, layer: Descriptor, unpack: LayerUnpack | undefined): Promise<void> {
    this.opts.signal?.throwIfAborted();
    const emit = this.opts.onLayer ?? (() => undefined);
    const step = { id: layer.digest, name: `layer ${layer.digest.slice(7, 19)} (${(layer.size / 1e6).toFixed(1)} MB)` };
    if (await this.state.store.has(layer.digest)) {
      unpack?.give(this.state.store.read(layer.digest), Promise.resolve());
      return emit({ type: 'step', ...step, status: 'cached', at: Date.now() });
    }
    await track(emit, step, async () => {
      const download = await (await this.registry.get()).fetchBlob(ref, layer);
      const body = this.opts.onLayer ? reportBytes(download, layer.digest, layer.size, this.opts.onLayer) : download;
      // Ctrl-C stops a download midway; the content store drops what it had written.
      const signal = this.opts.signal;
      const stop = (): void => void body.destroy(signal?.reason as Error);
      signal?.addEventListener('abort', stop, { once: true });
      if (signal?.aborted) stop();
      try {
        await this.ingest(body, layer, `${nameOf(ref)}@${layer.digest}`, unpack);
      } finally {
        signal?.removeEventListener('abort', stop);
      }
    });
  }

  /**
   * Stores a layer's bytes, verified, and gives them to `unpack`: as they arrive when it is
   * ready for them, else once stored. A blob that does not match its digest is kept nowhere (its
   * unpack waits for the store's verdict before it commits).
   */
  private async ingest(body: Readable, layer: Descriptor, source: string, unpack?: LayerUnpack): Promise<void> {
    const expected = { digest: layer.digest, size: layer.size, source };
    if (!unpack?.ready) {
      await this.state.store.ingest(body, expected);
      unpack?.give(this.state.store.read(layer.digest), Promise.resolve());
      return;
    }
    const [toStore, toSnapshot] = tee(body);
    const stored = this.state.store.ingest(toStore, expected);
    unpack.give(toSnapshot, stored);
    await stored;
  }

  /**
   * Like `docker pull`, keeps an image this build resolved at a registry under its name, for its
   * platform, once all of it is here, so later builds resolve it offline.
   */
  private async name(pinned: string, manifest: ImageManifest, config: ImageConfigFile): Promise<void> {
    if (!this.fromRegistry.has(pinned)) return;
    const indexDigest = this.fromRegistry.get(pinned);
    this.fromRegistry.delete(pinned);
    const ref = parseReference(pinned);
    const digest = ref.digest as Digest;
    // The registry index it was picked from (the client stored it): the name's other platforms
    // stay only if they are in it too. Without it the name becomes this image alone.
    const index = indexDigest ? await this.state.store.readJson<ImageIndex>(indexDigest).catch(() => undefined) : undefined;
    const sameIndex = new Set((index?.manifests ?? []).map((d) => d.digest));
    const named = { mediaType: manifest.mediaType ?? MediaType.OciManifest, digest, size: await this.state.store.size(digest), platform: platformOf(config) };
    await this.state.images.tagPlatform(nameOf(ref), named, sameIndex, this.state.store);
  }

  private async configOf(manifestDigest: Digest): Promise<ImageConfigFile> {
    const manifest = await this.state.store.readJson<ImageManifest>(manifestDigest);
    return this.state.store.readJson<ImageConfigFile>(manifest.config.digest);
  }
}

/** `body`, passed through, its bytes reported at most every BYTES_INTERVAL_MS and when the last arrive. */
function reportBytes(body: Readable, id: string, total: number, emit: ProgressListener): Readable {
  const started = Date.now();
  let current = 0;
  let reported = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      current += chunk.length;
      const at = Date.now();
      if (current === total || at - reported >= BYTES_INTERVAL_MS) {
        reported = at;
        emit({ type: 'bytes', id, current, total, started, at });
      }
      done(null, chunk);
    },
  });
  // An error or destroy() of either side ends both: the store sees a failed download, never a short one.
  return pipeline(body, counter, () => undefined);
}

function layerRecords(manifest: ImageManifest, config: ImageConfigFile): LayerRecord[] {
  if (manifest.layers.length !== config.rootfs.diff_ids.length) {
    throw new Error(`image ${manifest.config.digest}: ${manifest.layers.length} layers but ${config.rootfs.diff_ids.length} diff_ids`);
  }
  return manifest.layers.map((layer, i) => ({
    diffID: config.rootfs.diff_ids[i]!,
    digest: layer.digest,
    size: layer.size,
    mediaType: layer.mediaType,
  }));
}

/** `registry/repository:tag` without the digest. */
function nameOf(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}`;
}


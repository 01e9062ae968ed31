// Turns a solved root into an OCI image: the config (the frontend's ImageSpec plus rootfs and
// history) and the manifest, both stored as blobs. Exporters (local store, registry, archive)
// then only move blobs around.
//
// src/exporter owns turning a solved root into outputs: this assembly, layer compression
// (compress.ts), registry push (push.ts) and OCI archives (oci-archive.ts). It must not know the
// frontend or the solver: it gets the image spec, the layers and which steps added one as data.

import { statSync } from 'node:fs';
import type { LayerRecord } from '../cache/cache-index.js';
import type { ContentStore } from '../cache/content-store.js';
import type { Digest, ImageSpec } from '../definition/index.js';
import { canonicalJson } from '../oci/digest.js';
import { MediaType, type Descriptor, type HistoryEntry, type ImageConfigFile, type ImageManifest } from '../oci/types.js';

export interface BuiltImage {
  config: ImageConfigFile;
  configDescriptor: Descriptor;
  manifest: ImageManifest;
  manifestDescriptor: Descriptor;
}

export interface AssembleOptions {
  spec: ImageSpec;
  layers: LayerRecord[];
  /** The steps (vertices) that added a layer on top of their parent's; other steps' history entries are empty_layer. */
  addedLayer: ReadonlySet<Digest>;
  /**
   * RFC 3339 time of the image and of history entries that get no other (SOURCE_DATE_EPOCH, or
   * the build's time). With `fixed` (SOURCE_DATE_EPOCH) it is the image's time; otherwise the
   * image takes its last history entry's time, as BuildKit's does.
   */
  created: string;
  fixed?: boolean;
}

/** Registries and `docker load` want one family of media types per manifest: use OCI's. */
const OCI_LAYER_TYPES: Record<string, string> = {
  [MediaType.DockerLayerGzip]: MediaType.OciLayerGzip,
};

export async function assembleImage(store: ContentStore, opts: AssembleOptions): Promise<BuiltImage> {
  const history = historyOf({ ...opts, layers: opts.layers.map((l) => (l.createdAt === undefined ? withStoredTime(store, l) : l)) });
  const created = (opts.fixed ? undefined : history.findLast((h) => h.created !== undefined)?.created) ?? opts.created;

  const { platform } = opts.spec;
  const config: ImageConfigFile = {
    created,
    ...(opts.spec.author ? { author: opts.spec.author } : {}),
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: opts.spec.config,
    rootfs: { type: 'layers', diff_ids: opts.layers.map((l) => l.diffID) },
    history,
  };
  const configBlob = await store.putBytes(canonicalJson(config));
  const configDescriptor: Descriptor = { mediaType: MediaType.OciConfig, ...configBlob };

  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: configDescriptor,
    layers: opts.layers.map((l) => ({ mediaType: OCI_LAYER_TYPES[l.mediaType] ?? l.mediaType, digest: l.digest, size: l.size })),
  };
  const manifestBlob = await store.putBytes(canonicalJson(manifest));
  const manifestDescriptor: Descriptor = { mediaType: MediaType.OciManifest, ...manifestBlob };
  return { config, configDescriptor, manifest, manifestDescriptor };
}

/**
 * A layer that does not say when it was made (a base image's) was made here when its blob was
 * stored: BuildKit takes such a layer's time from its local record, so that a base history entry
 * without a time gets the same one in every rebuild, and the image keeps its ID.
 */
function withStoredTime(store: ContentStore, layer: LayerRecord): LayerRecord {
  const stored = statSync(store.path(layer.digest), { throwIfNoEntry: false });
  return stored ? { ...layer, createdAt: stored.mtime.toISOString() } : layer;
}

/**
 * The image's history, times filled in as BuildKit's exporter does: an entry that added a layer
 * and has no time takes its layer's (when it was made, so a build from the cache keeps it; the
 * build's time for a layer that does not say); an
 * entry without a layer takes that of the last layer before it, or, before the first new one,
 * of the first new one. Base image entries keep their own.
 */
function historyOf(opts: AssembleOptions): HistoryEntry[] {
  const history = opts.spec.history.map(({ vertex, ...entry }): HistoryEntry => {
    const h: HistoryEntry = { ...entry };
    if (vertex && opts.addedLayer.has(vertex)) delete h.empty_layer;
    else if (vertex) h.empty_layer = true;
    return h;
  });
  // History entries name the image's layers bottom up; extra layers (a base image without
  // history for all of its own) are the lowest ones.
  let layer = Math.max(0, opts.layers.length - history.filter((h) => !h.empty_layer).length);
  for (const h of history) {
    if (h.empty_layer) continue;
    h.created ??= opts.layers[layer]?.createdAt ?? opts.created;
    layer++;
  }

  // Before the first entry without a time: the first time after it; then the previous entry's.
  const firstMissing = history.findIndex((h) => h.created === undefined);
  let fill = firstMissing < 0 ? undefined : (history.slice(firstMissing).find((h) => h.created !== undefined) ?? history.findLast((h) => h.created !== undefined))?.created;
  let missingSeen = false;
  for (const h of history) {
    if (h.created === undefined) {
      missingSeen = true;
      h.created = fill ?? opts.created;
    } else if (missingSeen) fill = h.created;
  }
  // SOURCE_DATE_EPOCH: from the first entry that is not the base image's own as it came (a new
  // one, or one whose time was filled in here), no time is later than the epoch, as BuildKit
  // clamps: a base entry without a time would otherwise take this state directory's.
  if (opts.fixed) {
    const firstOwn = opts.spec.history.findIndex((e) => e.vertex !== undefined || e.created === undefined);
    const epoch = Date.parse(opts.created);
    if (firstOwn >= 0) for (const h of history.slice(firstOwn)) if (!(Date.parse(h.created!) <= epoch)) h.created = opts.created;
  }
  return history;
}

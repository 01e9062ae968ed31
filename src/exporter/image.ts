// Turns a solved root into an OCI image: the config (the frontend's ImageSpec plus rootfs and
// history) and the manifest, both stored as blobs. Exporters (local store, registry, archive)
// then only move blobs around.
//
// src/exporter owns turning a solved root into outputs: this assembly, layer compression
// (compress.ts), registry push (push.ts) and OCI archives (oci-archive.ts). It must not know the
// frontend or the solver: it gets the image spec, the layers and which steps added one as data.

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
  /** RFC 3339 time for `created` of the image and of new history entries. */
  created: string;
}

/** Registries and `docker load` want one family of media types per manifest: use OCI's. */
const OCI_LAYER_TYPES: Record<string, string> = {
  [MediaType.DockerLayerGzip]: MediaType.OciLayerGzip,
};

export async function assembleImage(store: ContentStore, opts: AssembleOptions): Promise<BuiltImage> {
  const history: HistoryEntry[] = [];
  for (const { vertex, ...entry } of opts.spec.history) {
    const h: HistoryEntry = { created: opts.created, ...entry };
    if (vertex && opts.addedLayer.has(vertex)) delete h.empty_layer;
    else if (vertex) h.empty_layer = true;
    history.push(h);
  }

  const { platform } = opts.spec;
  const config: ImageConfigFile = {
    created: opts.created,
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

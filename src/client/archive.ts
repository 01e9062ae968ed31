// `builder save`, `load` and `import`: images in and out of the local store as archives, in the
// formats `docker save` / `docker load` / `docker import` use.

import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { access, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultStateRoot, openState, type State } from '../cache/state.js';
import { writeImageArchive, writeOutputFile, type ArchiveFormat, type ArchiveImage } from '../exporter/archive.js';
import { configFromChanges } from '../frontend/changes.js';
import { canonicalJson } from '../oci/digest.js';
import { hostPlatform } from '../oci/platform.js';
import { MediaType, type Digest, type ImageConfigFile, type ImageManifest } from '../oci/types.js';
import { parseReference } from '../registry/reference.js';
import { writeLayer } from '../snapshotter/index.js';
import { uncompressedLayer } from '../snapshotter/layer-reader.js';
import { readImageArchive } from '../source/archive.js';
import { readFileHead } from '../util/read-file.js';
import { openStore, type ImagesOptions } from './images.js';

export interface SaveOptions extends ImagesOptions {
  /** Names or IDs of images in the local store. */
  refs: string[];
  /** The archive file; `-` writes to stdout. */
  dest: string;
  /** `docker` (default): loadable by `docker load` and read as an OCI layout too; `oci`: the OCI layout alone. */
  format?: ArchiveFormat;
  signal?: AbortSignal;
}

/** Writes images of the local store to one archive, each under the names given for it (an ID alone: every name it has). */
export async function save(opts: SaveOptions): Promise<void> {
  if (opts.refs.length === 0) throw new Error('save: name at least one image');
  const store = await openStore(opts.root);
  const images = new Map<Digest, ArchiveImage>();
  for (const ref of opts.refs) {
    const { image, names, byName } = await store.find(ref);
    const entry = images.get(image.manifestDescriptor.digest) ?? { manifestDescriptor: image.manifestDescriptor, manifest: image.manifest, names: [] };
    for (const name of byName ? [image.name] : names) if (!entry.names.includes(name)) entry.names.push(name);
    images.set(image.manifestDescriptor.digest, entry);
  }
  await writeOutputFile(opts.dest, (out) => writeImageArchive(store.store, [...images.values()], out, opts.format ?? 'docker'), opts.signal);
}

export interface LoadOptions extends ImagesOptions {
  /** The archive: a file, or `-` for stdin. */
  input: string;
  signal?: AbortSignal;
  /** Told when another build holds the state directory. */
  onWait?: (message: string) => void;
}

export interface LoadedImage {
  /** The image ID (config digest). */
  id: Digest;
  manifestDigest: Digest;
  /** Full names it was stored under; none for an unnamed image. */
  names: string[];
}

/** Reads a `docker save` or OCI archive into the local store and names its images (names are written only once every blob checked out). */
export async function load(opts: LoadOptions): Promise<LoadedImage[]> {
  if (opts.input !== '-') await access(opts.input).catch(() => Promise.reject(new Error(`${opts.input}: no such file`)));
  return withState(opts, async (state) => {
    const input = opts.input === '-' ? process.stdin : createReadStream(opts.input);
    if (opts.signal) opts.signal.addEventListener('abort', () => input.destroy(opts.signal!.reason as Error), { once: true });
    const images = await readImageArchive(state.store, input, opts.input === '-' ? 'stdin' : opts.input);
    opts.signal?.throwIfAborted();
    for (const image of images) for (const name of image.names) await state.images.tag(name, image.manifestDescriptor);
    return images.map((i) => ({ id: i.configDigest, manifestDigest: i.manifestDescriptor.digest, names: i.names }));
  });
}

export interface ImportOptions extends ImagesOptions {
  /** A root filesystem: a tar (plain, gzip or zstd; `-` for stdin) or a directory. */
  source: string;
  /** Name for the image; without one it is only reachable by its ID. */
  name?: string;
  /** The history entry's comment (docker's `--message`); default `Imported from SOURCE`. */
  message?: string;
  /** Dockerfile instructions for the config (docker's `--change`): CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR. */
  changes?: string[];
  onWait?: (message: string) => void;
}

/** `docker import`: an image of one layer holding `source`, for this machine's platform, its config empty but for `changes`. */
export async function importImage(opts: ImportOptions): Promise<LoadedImage> {
  const name = opts.name === undefined ? undefined : parseReference(opts.name).toString();
  const platform = hostPlatform();
  // Checked before anything is stored: a bad change fails naming it.
  const containerConfig = opts.changes?.length ? await configFromChanges(opts.changes, platform) : {};
  const isDir = opts.source !== '-' && (await stat(opts.source)).isDirectory();
  return withState(opts, async (state) => {
    const layer = isDir ? await layerFromDirectory(state, opts.source) : await layerFromTar(state, opts.source);
    const created = new Date().toISOString();
    const config: ImageConfigFile = {
      created,
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: containerConfig,
      rootfs: { type: 'layers', diff_ids: [layer.digest] },
      history: [{ created, created_by: '', comment: opts.message ?? `Imported from ${opts.source}` }],
    };
    const configBlob = await state.store.putBytes(canonicalJson(config));
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, ...configBlob },
      layers: [{ mediaType: MediaType.OciLayer, ...layer }],
    };
    const manifestBlob = await state.store.putBytes(canonicalJson(manifest));
    if (name) await state.images.tag(name, { mediaType: MediaType.OciManifest, ...manifestBlob, platform });
    return { id: configBlob.digest, manifestDigest: manifestBlob.digest, names: name ? [name] : [] };
  });
}

/** A directory as one uncompressed layer, packed as builds pack theirs. */
async function layerFromDirectory(state: State, dir: string): Promise<{ digest: Digest; size: number }> {
  const scratch = join(state.root, 'tmp', `import-${randomBytes(6).toString('hex')}`);
  await mkdir(scratch, { recursive: true });
  try {
    const layer = await writeLayer({ key: 'import', kind: 'active', snapshotter: 'native', dir, parents: [], scratch }, state.store);
    return { digest: layer.digest, size: layer.size };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** A tarball stored uncompressed, so its digest is its diffID; it must be a tar. */
async function layerFromTar(state: State, file: string): Promise<{ digest: Digest; size: number }> {
  const { tar } = await uncompressedLayer(file === '-' ? process.stdin : createReadStream(file), file);
  const layer = await state.store.ingest(tar as Readable, { source: file });
  const head = await readFileHead(state.store.path(layer.digest), 512);
  if (layer.size > 0 && head.toString('latin1', 257, 262) !== 'ustar') throw new Error(`${file}: not a tar archive`);
  return layer;
}

async function withState<T>(opts: ImagesOptions & { signal?: AbortSignal; onWait?: (message: string) => void }, work: (state: State) => Promise<T>): Promise<T> {
  const state = await openState(opts.root ?? defaultStateRoot(), { signal: opts.signal, onWait: opts.onWait });
  try {
    return await work(state);
  } finally {
    // Nothing here starts a container or mounts anything: it leaves nothing to sweep.
    await state.release({ clean: true });
  }
}

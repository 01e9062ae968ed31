// The local image store as `docker images`, `tag`, `rmi`, `inspect` and `history` show and change
// it. Reading needs no lock (a build running meanwhile may add a name); names change under the
// image index's own lock, and blobs are never removed here: an image whose last name goes is left
// to `prune`, as any other blob nothing names.

import { join, resolve } from 'node:path';
import { ContentStore } from '../cache/content-store.js';
import { ImageStore } from '../cache/image-store.js';
import { defaultStateRoot } from '../cache/state-root.js';
import { hostPlatform, platformOf } from '../oci/platform.js';
import { isIndexMediaType, type Descriptor, type Digest, type HistoryEntry, type ImageConfigFile, type ImageManifest } from '../oci/types.js';
import { parseReference } from '../registry/reference.js';
import { pathExists } from '../util/path-exists.js';

export interface ImagesOptions {
  /** State directory; default as for `build()`. */
  root?: string;
}

/** One name of the local store and the image it stands for (this machine's platform, for a multi-platform name). */
export interface LocalImage {
  /** Full reference: `docker.io/library/busybox:latest`. */
  name: string;
  /** The config digest: the image ID, as Docker's. */
  id: Digest;
  /** What the name points at: a manifest, or an index of the platforms the store has. */
  target: Descriptor;
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
  config: ImageConfigFile;
  /** Bytes of the image's layers as stored (layers built here uncompressed, pulled ones as pulled). */
  size: number;
}

export class NoSuchImageError extends Error {
  constructor(readonly ref: string) {
    super(`No such image: ${ref}`);
    this.name = 'NoSuchImageError';
  }
}

/** The store's images, one entry per name, newest first; `filter` (`REPO` or `REPO:TAG`) keeps matching names. */
export async function listImages(opts: ImagesOptions & { filter?: string } = {}): Promise<LocalImage[]> {
  const store = await openStore(opts.root);
  const wanted = opts.filter === undefined ? undefined : nameFilter(opts.filter);
  const out: LocalImage[] = [];
  for (const { name } of await store.images.list()) {
    if (wanted && !wanted(name)) continue;
    const image = await store.image(name).catch(() => undefined); // blobs gone: doctor reports it
    if (image) out.push(image);
  }
  return out.sort((a, b) => (b.config.created ?? '').localeCompare(a.config.created ?? '') || a.name.localeCompare(b.name));
}

/** The image a name (`app:1.0`) or an ID (`sha256:…`, or a prefix of its hex) stands for, with every name it has. */
export async function inspectImage(ref: string, opts: ImagesOptions = {}): Promise<LocalImage & { names: string[] }> {
  const store = await openStore(opts.root);
  const { image, names } = await store.find(ref);
  return { ...image, names };
}

/** `builder tag SOURCE TARGET`: TARGET names what SOURCE names (every platform of it). Returns TARGET's full name. */
export async function tagImage(source: string, target: string, opts: ImagesOptions = {}): Promise<string> {
  const name = parseReference(target).toString();
  if (parseReference(target).digest) throw new Error(`invalid tag ${JSON.stringify(target)}: a tag cannot contain a digest`);
  const store = await openStore(opts.root);
  const { image, byName } = await store.find(source);
  // Given by name, the new name gets all the old one names (every platform); by ID, that image.
  await store.images.tag(name, byName ? image.target : { ...image.manifestDescriptor, platform: platformOf(image.config) });
  return name;
}

export interface RemovedImage {
  /** Full names removed. */
  untagged: string[];
  /** The image ID, when no name is left for it (its blobs go at the next prune). */
  deleted?: Digest;
}

/**
 * `builder rmi`: removes the names given. An image ID removes every name of that image, which
 * docker refuses without `force` when there are several. Blobs stay for `prune` to collect.
 */
export async function removeImages(refs: readonly string[], opts: ImagesOptions & { force?: boolean } = {}): Promise<RemovedImage[]> {
  const store = await openStore(opts.root);
  const results: RemovedImage[] = [];
  for (const ref of refs) {
    const { image, names, byName } = await store.find(ref);
    const remove = byName ? [image.name] : names;
    if (remove.length > 1 && !opts.force) {
      throw new Error(`conflict: unable to delete ${shortId(image.id)} (must be forced) - image is referenced in multiple repositories`);
    }
    for (const name of remove) await store.images.untag(name);
    const left = (await store.namesOf(image.id)).length;
    results.push({ untagged: remove, ...(left === 0 ? { deleted: image.id } : {}) });
  }
  return results;
}

/** One row of `builder history`: a config history entry, with its layer's size when it made one. */
export interface HistoryRow extends HistoryEntry {
  /** The layer this step added, if any. */
  layer?: Descriptor;
  size: number;
}

/** The image's history, newest step first (as `docker history`). */
export async function imageHistory(ref: string, opts: ImagesOptions = {}): Promise<{ id: Digest; rows: HistoryRow[] }> {
  const { image } = await (await openStore(opts.root)).find(ref);
  const layers = [...image.manifest.layers];
  const rows: HistoryRow[] = (image.config.history ?? []).map((h) => {
    const layer = h.empty_layer ? undefined : layers.shift();
    return { ...h, ...(layer ? { layer } : {}), size: layer?.size ?? 0 };
  });
  return { id: image.id, rows: rows.reverse() };
}

/** The first 12 hex digits of a digest, as docker shows image IDs. */
export function shortId(digest: Digest): string {
  return digest.slice('sha256:'.length, 'sha256:'.length + 12);
}

/** The state directory's stores, for reading images by name or ID. */
export async function openStore(root: string | undefined): Promise<LocalStore> {
  const dir = resolve(root ?? defaultStateRoot());
  if (!(await pathExists(join(dir, 'index.json')))) return new LocalStore(dir, true);
  return new LocalStore(dir, false);
}

export class LocalStore {
  readonly store: ContentStore;
  readonly images: ImageStore;

  constructor(
    readonly root: string,
    private readonly empty: boolean,
  ) {
    this.store = new ContentStore(root);
    this.images = new ImageStore(root);
  }

  /** What `name` (a full reference in the store) stands for on this machine. */
  async image(name: string): Promise<LocalImage> {
    const target = await this.images.get(name);
    if (!target) throw new NoSuchImageError(name);
    const manifestDescriptor = (await this.images.resolve(name, hostPlatform(), this.store)) ?? (await this.anyManifest(target));
    const manifest = await this.store.readJson<ImageManifest>(manifestDescriptor.digest);
    const config = await this.store.readJson<ImageConfigFile>(manifest.config.digest);
    const size = manifest.layers.reduce((n, l) => n + l.size, 0);
    return { name, id: manifest.config.digest, target, manifestDescriptor, manifest, config, size };
  }

  /** The image `ref` means: a name, an ID, or an ID's unique prefix; with all its names. */
  async find(ref: string): Promise<{ image: LocalImage; names: string[]; byName: boolean }> {
    if (this.empty) throw new NoSuchImageError(ref);
    const name = fullNameOrUndefined(ref);
    if (name && (await this.images.get(name))) {
      const image = await this.image(name);
      return { image, names: await this.namesOf(image.id), byName: true };
    }
    const hex = /^(?:sha256:)?([0-9a-f]{1,64})$/.exec(ref)?.[1];
    if (hex) {
      const all = await this.all();
      const ids = new Set(all.filter((i) => i.id.slice('sha256:'.length).startsWith(hex)).map((i) => i.id));
      if (ids.size > 1) throw new Error(`${ref}: more than one image ID starts with it; give more of it`);
      const [id] = ids;
      if (id) {
        const mine = all.filter((i) => i.id === id);
        return { image: mine[0]!, names: mine.map((i) => i.name), byName: false };
      }
    }
    throw new NoSuchImageError(ref);
  }

  async namesOf(id: Digest): Promise<string[]> {
    return (await this.all()).filter((i) => i.id === id).map((i) => i.name);
  }

  private async all(): Promise<LocalImage[]> {
    const out: LocalImage[] = [];
    for (const { name } of await this.images.list()) {
      const image = await this.image(name).catch(() => undefined);
      if (image) out.push(image);
    }
    return out;
  }

  /** A name with no image for this machine's platform: its first manifest. */
  private async anyManifest(target: Descriptor): Promise<Descriptor> {
    if (!isIndexMediaType(target.mediaType)) return target;
    const index = await this.store.readJson<{ manifests: Descriptor[] }>(target.digest);
    const first = index.manifests[0];
    if (!first) throw new Error(`image index ${target.digest} lists no manifest`);
    return first;
  }
}

function fullNameOrUndefined(ref: string): string | undefined {
  try {
    return parseReference(ref).toString();
  } catch {
    return undefined;
  }
}

/** `docker images REPO[:TAG]`: the repository must match; the tag too when given. */
function nameFilter(filter: string): (name: string) => boolean {
  const want = parseReference(filter);
  const tagGiven = /:[^/]*$/.test(filter) || filter.includes('@');
  return (name) => {
    const ref = parseReference(name);
    return ref.registry === want.registry && ref.repository === want.repository && (!tagGiven || (ref.tag === want.tag && ref.digest === want.digest));
  };
}

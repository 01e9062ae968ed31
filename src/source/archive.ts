// Reading image archives into the local store (`builder load`): what `docker save` writes
// (Docker 20.10's `<id>/layer.tar` layout, or Docker 25's OCI layout with `manifest.json`), and
// OCI image layouts as tars (`--output type=oci`, `skopeo copy … oci-archive:`).
//
// The archive is read once, as a stream: every file that can be a blob goes into the content store
// as it arrives (a `blobs/sha256/<hex>` file must hash to its name, or the load fails), the small
// index files are kept in memory, and once the end is reached they say what the blobs are.
// Each layer's uncompressed digest is checked against the config's diff_ids before any name is
// written, so a damaged archive names nothing.

import { posix } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { ContentStore } from '../cache/content-store.js';
import { DigestCounter } from '../cache/content-store.js';
import { canonicalJson, isSha256Digest } from '../oci/digest.js';
import { hostPlatform, platformOf, selectManifest } from '../oci/platform.js';
import { MediaType, isIndexMediaType, type Descriptor, type Digest, type ImageConfigFile, type ImageIndex, type ImageManifest } from '../oci/types.js';
import { parseReference } from '../registry/reference.js';
import { layerCompression, uncompressedLayer } from '../snapshotter/layer-reader.js';
import { readFileHead } from '../util/read-file.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';
/** Index files are read into memory; anything larger is not one. */
const MAX_INDEX_FILE = 32 * 1024 * 1024;
const INDEX_FILES = new Set(['manifest.json', 'index.json', 'repositories', 'oci-layout']);

/** An image found in an archive, its blobs stored: ready to be named. */
export interface ArchivedImage {
  manifestDescriptor: Descriptor & { platform: NonNullable<Descriptor['platform']> };
  configDigest: Digest;
  /** Full references from the archive (`RepoTags`, or the OCI name annotations); may be empty. */
  names: string[];
}

export class ArchiveError extends Error {
  constructor(archive: string, message: string) {
    super(`${archive}: ${message}`);
    this.name = 'ArchiveError';
  }
}

type ArchiveFile = { digest: Digest; size: number } | { link: string };

/** Reads the archive `input` (named `archive` in errors) into `store`; returns its images. */
export async function readImageArchive(store: ContentStore, input: Readable, archive: string): Promise<ArchivedImage[]> {
  const files = new Map<string, ArchiveFile>();
  const indexFiles = new Map<string, Buffer>();
  const extract = tar.extract();
  input.once('error', (err) => extract.destroy(err));
  input.pipe(extract as unknown as NodeJS.WritableStream);
  try {
    for await (const entry of extract) {
      const name = posix.normalize(entry.header.name).replace(/^(\.\/)+|\/+$/g, '');
      if (entry.header.type === 'symlink' || entry.header.type === 'link') {
        const target = entry.header.linkname ?? '';
        files.set(name, { link: entry.header.type === 'symlink' ? posix.join(posix.dirname(name), target) : posix.normalize(target) });
        entry.resume();
      } else if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
        entry.resume();
      } else if (INDEX_FILES.has(name)) {
        indexFiles.set(name, await readSmall(entry, archive, name));
      } else if (/(^|\/)(json|VERSION)$/.test(name)) {
        entry.resume(); // Docker's legacy per-layer metadata: nothing loads it
      } else {
        const hex = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name)?.[1];
        const stored = await store.ingest(Readable.from(entry), { ...(hex ? { digest: `sha256:${hex}` as Digest } : {}), source: `${archive}: ${name}` });
        files.set(name, stored);
      }
    }
  } catch (err) {
    // A tar error says nothing of which file: name it (a digest mismatch already does).
    if (err instanceof Error && !err.message.includes(archive)) throw new ArchiveError(archive, `not a readable image archive: ${err.message}`);
    throw err;
  }
  const reader = new ArchiveContents(store, archive, files);
  if (indexFiles.has('manifest.json')) return reader.dockerImages(parseJson(indexFiles.get('manifest.json')!, archive, 'manifest.json'));
  if (indexFiles.has('index.json')) return reader.ociImages(parseJson(indexFiles.get('index.json')!, archive, 'index.json'));
  throw new ArchiveError(archive, 'not an image archive: it has neither manifest.json (docker save) nor index.json (OCI layout)');
}

class ArchiveContents {
  constructor(
    private readonly store: ContentStore,
    private readonly archive: string,
    private readonly files: ReadonlyMap<string, ArchiveFile>,
  ) {}

  /** `docker save`'s manifest.json: each image's config and layer files, and its RepoTags. */
  async dockerImages(entries: unknown): Promise<ArchivedImage[]> {
    if (!Array.isArray(entries)) throw new ArchiveError(this.archive, 'manifest.json: expected a list of images');
    const images: ArchivedImage[] = [];
    for (const [i, e] of (entries as Array<{ Config?: unknown; RepoTags?: unknown; Layers?: unknown }>).entries()) {
      const where = `manifest.json entry ${i + 1}`;
      if (typeof e?.Config !== 'string' || !Array.isArray(e.Layers)) throw new ArchiveError(this.archive, `${where}: expected Config and Layers`);
      const config = this.file(e.Config, where);
      // Docker 20.10 names the config file after its digest: it must match.
      const named = /^([0-9a-f]{64})\.json$/.exec(posix.basename(e.Config))?.[1];
      if (named && `sha256:${named}` !== config.digest) throw new ArchiveError(this.archive, `${e.Config}: content digest ${config.digest} does not match its name`);
      const configFile = await this.config(config.digest, e.Config);
      if (configFile.rootfs.diff_ids.length !== e.Layers.length) {
        throw new ArchiveError(this.archive, `${where}: ${e.Layers.length} layers, but the config lists ${configFile.rootfs.diff_ids.length} diff_ids`);
      }
      const layers: Descriptor[] = [];
      for (const [j, path] of (e.Layers as unknown[]).entries()) {
        if (typeof path !== 'string') throw new ArchiveError(this.archive, `${where}: layer ${j + 1} is not a path`);
        const blob = this.file(path, where);
        layers.push({ mediaType: await this.checkLayer(blob.digest, configFile.rootfs.diff_ids[j]!, path), digest: blob.digest, size: blob.size });
      }
      const manifest: ImageManifest = {
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: MediaType.OciConfig, digest: config.digest, size: config.size },
        layers,
      };
      const stored = await this.store.putBytes(canonicalJson(manifest));
      const tags = Array.isArray(e.RepoTags) ? (e.RepoTags as unknown[]).filter((t): t is string => typeof t === 'string') : [];
      images.push({
        manifestDescriptor: { mediaType: MediaType.OciManifest, ...stored, platform: platformOf(configFile) },
        configDigest: config.digest,
        names: tags.map((t) => this.reference(t, where)),
      });
    }
    return images;
  }

  /** An OCI layout's index.json: each entry a manifest (or an index: this machine's platform is taken), named by its annotations. */
  async ociImages(index: unknown): Promise<ArchivedImage[]> {
    const manifests = (index as ImageIndex | undefined)?.manifests;
    if (!Array.isArray(manifests)) throw new ArchiveError(this.archive, 'index.json: expected "manifests"');
    const images: ArchivedImage[] = [];
    for (const desc of manifests) {
      const where = `index.json entry ${desc.digest}`;
      let target: Descriptor = desc;
      if (isIndexMediaType(target.mediaType)) {
        const nested = await this.blobJson<ImageIndex>(target, where);
        const chosen = selectManifest(nested.manifests, hostPlatform());
        if (!chosen) throw new ArchiveError(this.archive, `${where}: no image for this machine's platform`);
        target = chosen;
      }
      const manifest = await this.blobJson<ImageManifest>(target, where);
      const configFile = await this.config(this.blob(manifest.config, where).digest, `config ${manifest.config.digest}`);
      for (const layer of manifest.layers) this.blob(layer, where);
      const name = desc.annotations?.[CONTAINERD_NAME] ?? fullName(desc.annotations?.[REF_NAME]);
      images.push({
        manifestDescriptor: { mediaType: target.mediaType, digest: target.digest, size: target.size, platform: platformOf(configFile) },
        configDigest: manifest.config.digest,
        names: name ? [this.reference(name, where)] : [],
      });
    }
    return images;
  }

  private file(path: string, where: string): { digest: Digest; size: number } {
    let at = posix.normalize(path);
    for (let hops = 0; hops < 16; hops++) {
      const f = this.files.get(at);
      if (!f) break;
      if ('digest' in f) return f;
      at = f.link;
    }
    throw new ArchiveError(this.archive, `${where}: ${path} is not in the archive`);
  }

  /** A descriptor's blob, which must be in the archive (its digest was checked as it was read). */
  private blob(desc: Descriptor, where: string): { digest: Digest; size: number } {
    if (!isSha256Digest(desc.digest)) throw new ArchiveError(this.archive, `${where}: invalid digest ${JSON.stringify(desc.digest)}`);
    const f = this.file(`blobs/sha256/${desc.digest.slice('sha256:'.length)}`, where);
    if (f.size !== desc.size) throw new ArchiveError(this.archive, `${where}: blob ${desc.digest} has ${f.size} bytes, its descriptor says ${desc.size}`);
    return f;
  }

  private async blobJson<T>(desc: Descriptor, where: string): Promise<T> {
    return parseJson(await this.store.readBytes(this.blob(desc, where).digest), this.archive, desc.digest) as T;
  }

  private async config(digest: Digest, path: string): Promise<ImageConfigFile> {
    const config = parseJson(await this.store.readBytes(digest), this.archive, path) as ImageConfigFile;
    if (!Array.isArray(config?.rootfs?.diff_ids) || typeof config.os !== 'string' || typeof config.architecture !== 'string') {
      throw new ArchiveError(this.archive, `${path}: not an image config (needs os, architecture and rootfs.diff_ids)`);
    }
    return config;
  }

  /** Checks that the stored layer unpacks to `diffID`; returns its media type (by its compression). */
  private async checkLayer(digest: Digest, diffID: Digest, path: string): Promise<string> {
    // An uncompressed layer's digest is its diffID: only a compressed one is read again.
    const compression = layerCompression(await readFileHead(this.store.path(digest), 4));
    let actual = digest;
    if (compression) {
      const counter = new DigestCounter();
      for await (const chunk of (await uncompressedLayer(this.store.read(digest), path)).tar.pipe(counter)) void chunk;
      actual = counter.digest();
    }
    if (actual !== diffID) throw new ArchiveError(this.archive, `${path}: uncompressed digest ${actual} does not match diff_id ${diffID}`);
    return compression === 'gzip' ? MediaType.OciLayerGzip : compression === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayer;
  }

  private reference(name: string, where: string): string {
    try {
      return parseReference(name).toString();
    } catch (err) {
      throw new ArchiveError(this.archive, `${where}: invalid image name ${JSON.stringify(name)}: ${(err as Error).message}`);
    }
  }
}

/** An OCI ref name that is a whole image name (`docker.io/library/app:1`), not a bare tag (`1`). */
function fullName(refName: string | undefined): string | undefined {
  return refName && /[/:@]/.test(refName) ? refName : undefined;
}

async function readSmall(entry: AsyncIterable<unknown>, archive: string, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of entry) {
    size += (chunk as Buffer).length;
    if (size > MAX_INDEX_FILE) throw new ArchiveError(archive, `${name} is larger than ${MAX_INDEX_FILE} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function parseJson(bytes: Buffer, archive: string, name: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ArchiveError(archive, `${name}: invalid JSON (${(err as Error).message})`);
  }
}

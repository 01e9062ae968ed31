// Image archives: an OCI image layout as a tar stream (`--output type=oci`), and the same plus
// Docker's `manifest.json` and `repositories` (`builder save`, `--output type=docker`), which is
// what `docker save` writes since Docker 25: `docker load` of any version reads `manifest.json`,
// OCI tools read `index.json`, and both point at the one copy of each blob under `blobs/sha256/`.
// Blobs are streamed from the content store; small metadata files come first, so a reader that
// streams the archive knows what each blob is before it arrives.

import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { addAbortSignal, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import type { ContentStore } from '../cache/content-store.js';
import { MediaType, type Descriptor, type ImageIndex, type ImageManifest } from '../oci/types.js';
import { parseReference } from '../registry/reference.js';

const FIXED_MTIME = new Date(0);
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** The full name, as Docker 25+ and BuildKit's docker exporter write it beside the OCI ref name. */
export const CONTAINERD_NAME_ANNOTATION = 'io.containerd.image.name';

/** One image in an archive: its manifest (already read) and the full names it goes under. */
export interface ArchiveImage {
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
  /** Full references (`docker.io/library/app:1.0`); none leaves the image unnamed. */
  names: string[];
}

/** `docker`: add `manifest.json` and `repositories` for `docker load`; else an OCI layout alone. */
export type ArchiveFormat = 'oci' | 'docker';

/** Writes `images` as one archive to `out` (the caller owns `out`'s lifetime and errors). */
export async function writeImageArchive(store: ContentStore, images: readonly ArchiveImage[], out: Writable, format: ArchiveFormat): Promise<void> {
  const tar = tarPack();
  const written = pipeline(tar, out, { end: false });
  try {
    const addBytes = (name: string, data: string) => tar.entry({ name, mtime: FIXED_MTIME, mode: 0o644, uid: 0, gid: 0 }, data);
    addBytes('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    addBytes('index.json', JSON.stringify(ociIndex(images, format)));
    if (format === 'docker') {
      addBytes('manifest.json', JSON.stringify(dockerManifest(images)));
      addBytes('repositories', JSON.stringify(repositories(images)));
    }
    const seen = new Set<string>();
    for (const { manifestDescriptor, manifest } of images) {
      for (const blob of [manifestDescriptor, manifest.config, ...manifest.layers]) {
        if (seen.has(blob.digest)) continue;
        seen.add(blob.digest);
        const entry = tar.entry({ name: blobPath(blob), size: blob.size, mtime: FIXED_MTIME, mode: 0o644, uid: 0, gid: 0 });
        await pipeline(store.read(blob.digest), entry);
      }
    }
    tar.finalize();
    await written;
  } catch (err) {
    tar.destroy();
    await written.catch(() => undefined);
    throw err;
  }
}

/**
 * Runs `write` on `dest`: `-` is stdout; a file is written under a temporary name beside it and
 * renamed when complete, so a failed or interrupted export leaves no partial file. `signal`
 * stops writing a file (its stream is destroyed); stdout is left to the process's exit.
 */
export async function writeOutputFile(dest: string, write: (out: Writable) => Promise<void>, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  if (dest === '-') {
    await write(process.stdout);
    return;
  }
  const tmp = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
  const file = createWriteStream(tmp);
  if (signal) addAbortSignal(signal, file);
  const closed = new Promise<void>((resolve, reject) => {
    file.once('close', resolve);
    file.once('error', reject);
  });
  try {
    await write(file);
    file.end();
    await closed;
    await rename(tmp, dest);
  } catch (err) {
    file.destroy();
    await closed.catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
}

function blobPath(d: Descriptor): string {
  return `blobs/sha256/${d.digest.slice('sha256:'.length)}`;
}

function ociIndex(images: readonly ArchiveImage[], format: ArchiveFormat): ImageIndex {
  const manifests = images.flatMap(({ manifestDescriptor, names }) =>
    names.length === 0
      ? [manifestDescriptor]
      : names.map((name) => ({
          ...manifestDescriptor,
          annotations: { [REF_NAME_ANNOTATION]: name, ...(format === 'docker' ? { [CONTAINERD_NAME_ANNOTATION]: name } : {}) },
        })),
  );
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
}

/** `docker load`'s index: config and layer paths in the archive, and the names as docker prints them. */
function dockerManifest(images: readonly ArchiveImage[]): Array<{ Config: string; RepoTags: string[]; Layers: string[] }> {
  return images.map(({ manifest, names }) => ({
    Config: blobPath(manifest.config),
    RepoTags: names.map((n) => parseReference(n).familiarString),
    Layers: manifest.layers.map(blobPath),
  }));
}

/** The legacy `repositories` file: repository → tag → top layer. */
function repositories(images: readonly ArchiveImage[]): Record<string, Record<string, string>> {
  const repos: Record<string, Record<string, string>> = {};
  for (const { manifest, names } of images) {
    const top = manifest.layers.at(-1);
    if (!top) continue;
    for (const name of names) {
      const ref = parseReference(name);
      if (!ref.tag) continue;
      (repos[ref.familiarName] ??= {})[ref.tag] = top.digest.slice('sha256:'.length);
    }
  }
  return repos;
}

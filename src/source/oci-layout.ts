// An OCI image layout on disk: an image named with `--build-context NAME=oci-layout://DIR`, or a
// cache written with `--cache-to type=local`. Read only below its directory, every blob checked
// against its digest.

import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { ContentStore } from '../cache/content-store.js';
import { isSha256Digest, sha256 } from '../oci/digest.js';
import { selectManifest, formatPlatform } from '../oci/platform.js';
import { isIndexMediaType, type Descriptor, type Digest, type ImageIndex, type ImageManifest, type Platform } from '../oci/types.js';

/** Documents read whole (a manifest, an index, a config) are small; a bigger one is refused. */
const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;

const REF_NAME = 'org.opencontainers.image.ref.name';

export class OciLayout {
  constructor(readonly dir: string) {}

  /** A digest from the layout's own files names a file below `dir`, never a path out of it. */
  blobPath(digest: Digest): string {
    if (!isSha256Digest(digest)) throw new Error(`${this.dir}: ${JSON.stringify(digest)} is not a sha256 digest`);
    return join(this.dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  }

  open(desc: Descriptor): Readable {
    return createReadStream(this.blobPath(desc.digest));
  }

  /** The entry of index.json named `tag`; else, unless `exact`, its only entry when it has one. */
  async entry(tag: string, exact = false): Promise<Descriptor | undefined> {
    const index = JSON.parse(await readFile(join(this.dir, 'index.json'), 'utf8')) as ImageIndex;
    const manifests = Array.isArray(index?.manifests) ? index.manifests : [];
    return manifests.find((m) => m.annotations?.[REF_NAME] === tag) ?? (!exact && manifests.length === 1 ? manifests[0] : undefined);
  }

  /** A manifest, index or config: read whole (bounded) and checked against `desc`. */
  readDocument(desc: Descriptor): Promise<Buffer> {
    return readVerified(this.open(desc), desc);
  }
}

/** Reads a small blob whole and checks it is the one described. */
export async function readVerified(stream: Readable, desc: Descriptor): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_DOCUMENT_BYTES || size > desc.size) {
      stream.destroy();
      throw new Error(`blob ${desc.digest} is larger than its ${desc.size} bytes`);
    }
    chunks.push(chunk);
  }
  const bytes = Buffer.concat(chunks);
  if (sha256(bytes) !== desc.digest) throw new Error(`blob ${desc.digest} does not match its digest`);
  return bytes;
}

/**
 * Copies the image `tag` (or the manifest or index `digest`) of a layout into the content store,
 * for `platform` when it is an index: manifest, config and layers, each verified (layers
 * streamed). Returns the manifest's digest.
 */
export async function importLayoutImage(store: ContentStore, layout: OciLayout, pick: { tag: string } | { digest: Digest }, platform: Platform): Promise<Digest> {
  const where = 'tag' in pick ? `${layout.dir}:${pick.tag}` : `${layout.dir}@${pick.digest}`;
  let desc: Descriptor | undefined;
  try {
    desc = 'tag' in pick ? await layout.entry(pick.tag, true) : { mediaType: '', digest: pick.digest, size: MAX_DOCUMENT_BYTES };
  } catch (err) {
    throw new Error(`OCI layout ${where}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no index.json (not an OCI image layout)' : (err as Error).message}`);
  }
  if (!desc) throw new Error(`OCI layout ${where}: no image by that tag in index.json`);
  const fail = (why: string): never => {
    throw new Error(`OCI layout ${where}: ${why}`);
  };
  const read = async (d: Descriptor) => {
    try {
      return await layout.readDocument(d);
    } catch (err) {
      return fail((err as NodeJS.ErrnoException).code === 'ENOENT' ? `blob ${d.digest} is missing` : (err as Error).message);
    }
  };
  let bytes = await read(desc);
  let doc = JSON.parse(bytes.toString('utf8')) as ImageManifest | ImageIndex;
  if (isIndexMediaType(doc.mediaType ?? desc.mediaType) || 'manifests' in doc) {
    const chosen = selectManifest((doc as ImageIndex).manifests ?? [], platform) ?? fail(`no image for ${formatPlatform(platform)} in its index`);
    desc = chosen;
    bytes = await read(chosen);
    doc = JSON.parse(bytes.toString('utf8')) as ImageManifest;
  }
  const manifest = doc as ImageManifest;
  if (!manifest.config || !Array.isArray(manifest.layers)) fail(`${desc.digest} is not an image manifest`);
  const digest = sha256(bytes);
  await store.putBytes(bytes);
  await store.putBytes(await read(manifest.config));
  for (const layer of manifest.layers) {
    if (await store.has(layer.digest)) continue;
    try {
      await store.ingest(layout.open(layer), { digest: layer.digest, size: layer.size });
    } catch (err) {
      fail(`layer ${layer.digest}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message}`);
    }
  }
  return digest;
}

// `--output type=oci,dest=FILE.tar`: an OCI image layout as a tar stream, blobs streamed from the
// content store. Written to a temporary file and renamed, so a failed export leaves no half file.

import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import type { ContentStore } from '../cache/content-store.js';
import { MediaType, type Descriptor, type ImageIndex } from '../oci/types.js';
import type { BuiltImage } from './image.js';

const FIXED_MTIME = new Date(0);

export async function writeOciArchive(store: ContentStore, image: BuiltImage, dest: string, names: string[]): Promise<void> {
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: (names.length > 0 ? names : [undefined]).map((name) => ({
      ...image.manifestDescriptor,
      ...(name ? { annotations: { 'org.opencontainers.image.ref.name': name } } : {}),
    })),
  };
  const blobs: Descriptor[] = [image.manifestDescriptor, image.configDescriptor, ...image.manifest.layers];
  const tar = tarPack();
  const tmp = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
  const written = pipeline(tar, createWriteStream(tmp));
  try {
    const addBytes = (name: string, data: string) => {
      tar.entry({ name, mtime: FIXED_MTIME, mode: 0o644, uid: 0, gid: 0 }, data);
    };
    addBytes('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    addBytes('index.json', JSON.stringify(index));
    const seen = new Set<string>();
    for (const blob of blobs) {
      if (seen.has(blob.digest)) continue;
      seen.add(blob.digest);
      const entry = tar.entry({
        name: `blobs/sha256/${blob.digest.slice('sha256:'.length)}`,
        size: blob.size,
        mtime: FIXED_MTIME,
        mode: 0o644,
        uid: 0,
        gid: 0,
      });
      await pipeline(store.read(blob.digest), entry);
    }
    tar.finalize();
    await written;
    await rename(tmp, dest);
  } catch (err) {
    tar.destroy();
    await written.catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
}

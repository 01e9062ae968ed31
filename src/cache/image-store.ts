// The local image store: named images in the state directory, which is itself an OCI image
// layout (`oci-layout`, `index.json`, `blobs/sha256`). Each name is a manifest descriptor
// annotated with the full reference, so `skopeo … oci:STATE:NAME` and umoci read it directly.

import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Descriptor, ImageIndex } from '../oci/types.js';
import { MediaType } from '../oci/types.js';

const REF_NAME = 'org.opencontainers.image.ref.name';

export class ImageStore {
  private readonly indexFile: string;

  constructor(readonly root: string) {
    this.indexFile = join(root, 'index.json');
  }

  async init(): Promise<void> {
    await writeFile(join(this.root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    try {
      await readFile(this.indexFile);
    } catch {
      await this.write({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] });
    }
  }

  async list(): Promise<Array<{ name: string; descriptor: Descriptor }>> {
    const index = await this.read();
    return index.manifests.flatMap((d) => {
      const name = d.annotations?.[REF_NAME];
      return name ? [{ name, descriptor: d }] : [];
    });
  }

  async get(name: string): Promise<Descriptor | undefined> {
    return (await this.list()).find((e) => e.name === name)?.descriptor;
  }

  /** Points `name` at a manifest (replacing what it named before). */
  async tag(name: string, manifest: Descriptor): Promise<void> {
    const index = await this.read();
    const others = index.manifests.filter((d) => d.annotations?.[REF_NAME] !== name);
    const entry: Descriptor = {
      mediaType: manifest.mediaType,
      digest: manifest.digest,
      size: manifest.size,
      annotations: { [REF_NAME]: name },
    };
    await this.write({ ...index, manifests: [...others, entry] });
  }

  private async read(): Promise<ImageIndex> {
    return JSON.parse(await readFile(this.indexFile, 'utf8')) as ImageIndex;
  }

  private async write(index: ImageIndex): Promise<void> {
    const tmp = `${this.indexFile}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(index, null, 2));
    await rename(tmp, this.indexFile);
  }
}

// The local image store: named images in the state directory, which is itself an OCI image
// layout (`oci-layout`, `index.json`, `blobs/sha256`). Each name is a manifest descriptor
// annotated with the full reference, so `skopeo … oci:STATE:NAME` and umoci read it directly.
//
// `index.json` is replaced by rename, so readers always see a whole file. Changes read, modify and
// write it under the lock `index.lock` (see lock.ts), one at a time across processes, and in
// turn within a process (two bases pulled by parallel stages, a pull and the final tag): no
// update is lost to another.

import { randomBytes } from 'node:crypto';
import { access, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Descriptor, ImageIndex } from '../oci/types.js';
import { MediaType } from '../oci/types.js';
import { acquireLock } from './lock.js';

const REF_NAME = 'org.opencontainers.image.ref.name';

/** This process's updates waiting or under way, per index file: each starts when the one before ends. */
const updates = new Map<string, Promise<void>>();

export class ImageStore {
  private readonly indexFile: string;
  private readonly lockDir: string;

  constructor(readonly root: string) {
    this.indexFile = join(root, 'index.json');
    this.lockDir = join(root, 'index.lock');
  }

  async init(): Promise<void> {
    await writeFile(join(this.root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    // Created under the lock: a second process starting at the same moment must not write an
    // empty index over a name the first one has just added.
    if (!(await access(this.indexFile).then(() => true, () => false))) await this.update((index) => index);
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
    await this.update((index) => {
      const others = index.manifests.filter((d) => d.annotations?.[REF_NAME] !== name);
      const entry: Descriptor = {
        mediaType: manifest.mediaType,
        digest: manifest.digest,
        size: manifest.size,
        annotations: { [REF_NAME]: name },
      };
      return { ...index, manifests: [...others, entry] };
    });
  }

  /** Applies `mutate` to the index as it is now, holding this process's turn and the lock. */
  private update(mutate: (index: ImageIndex) => ImageIndex): Promise<void> {
    const file = this.indexFile;
    const run = async (): Promise<void> => {
      const unlock = await acquireLock(this.lockDir, `image index ${file}`, { pollMs: 10 });
      try {
        await this.write(mutate(await this.read()));
      } finally {
        await unlock();
      }
    };
    const done = (updates.get(file) ?? Promise.resolve()).then(run);
    const turn = done.catch(() => undefined);
    updates.set(file, turn);
    void turn.then(() => {
      if (updates.get(file) === turn) updates.delete(file);
    });
    return done;
  }

  private async read(): Promise<ImageIndex> {
    try {
      return JSON.parse(await readFile(this.indexFile, 'utf8')) as ImageIndex;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
    }
  }

  private async write(index: ImageIndex): Promise<void> {
    const tmp = `${this.indexFile}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(index, null, 2));
    await rename(tmp, this.indexFile);
  }
}

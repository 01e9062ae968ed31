// The local image store: named images in the state directory, which is itself an OCI image
// layout (`oci-layout`, `index.json`, `blobs/sha256`). Each name is one descriptor annotated
// with the full reference, so `skopeo … oci:STATE:NAME` and umoci read it directly.
//
// A name resolves per platform, as in Docker's containerd image store. It points at a manifest
// (the usual case: one platform; the descriptor carries it) or, once pulls brought it for several
// platforms, at an image index listing the manifests the store has for it, each with its
// platform: skopeo then picks one as it does from a registry's index (`--override-arch`).
// A build names one image, so tagging its result replaces the whole name, as Docker does.
//
// `index.json` is replaced by rename, so readers always see a whole file. Changes read, modify and
// write it under the lock `index.lock` (see lock.ts), one at a time across processes, and in
// turn within a process (two bases pulled by parallel stages, a pull and the final tag): no
// update is lost to another.

import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { platformOf, platformRank, selectManifest } from '../oci/platform.js';
import type { Descriptor, Digest, ImageConfigFile, ImageIndex, ImageManifest, Platform } from '../oci/types.js';
import { isIndexMediaType, MediaType } from '../oci/types.js';
import { acquireLock } from './lock.js';
import { writeFileAtomicSync } from '../util/write-file.js';

const REF_NAME = 'org.opencontainers.image.ref.name';

/** This process's updates waiting or under way, per index file: each starts when the one before ends. */
const updates = new Map<string, Promise<void>>();

/** The blobs names point at: the content store. */
export interface Blobs {
  readJson<T>(digest: Digest): Promise<T>;
  putBytes(data: string): Promise<{ digest: Digest; size: number }>;
}

/** A manifest with the platform of its image. */
export type PlatformManifest = Descriptor & { platform: Platform };

export class ImageStore {
  private readonly indexFile: string;
  private readonly lockDir: string;

  constructor(readonly root: string) {
    this.indexFile = join(root, 'index.json');
    this.lockDir = join(root, 'index.lock');
  }

  async init(): Promise<void> {
    // Checked synchronously, as the state directory's opening (see state.ts): part of every command.
    const layout = join(this.root, 'oci-layout');
    if (!existsSync(layout)) await writeFile(layout, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    // Created under the lock: a second process starting at the same moment must not write an
    // empty index over a name the first one has just added.
    if (!existsSync(this.indexFile)) await this.update((index) => index);
  }

  async list(): Promise<Array<{ name: string; descriptor: Descriptor }>> {
    const index = await this.read();
    return index.manifests.flatMap((d) => {
      const name = d.annotations?.[REF_NAME];
      return name ? [{ name, descriptor: d }] : [];
    });
  }

  /** What `name` points at, for any platform. */
  async get(name: string): Promise<Descriptor | undefined> {
    return (await this.list()).find((e) => e.name === name)?.descriptor;
  }

  /**
   * The manifest `name` has for `platform`, chosen as from a registry's index (containerd's
   * order: linux/amd64 also takes linux/386), or undefined when it has none.
   */
  async resolve(name: string, platform: Platform, blobs: Pick<Blobs, 'readJson'>): Promise<Descriptor | undefined> {
    const target = await this.get(name);
    if (!target) return undefined;
    try {
      return selectManifest(await manifestsOf(target, blobs), platform);
    } catch {
      return undefined; // blobs missing or unreadable: not usable here
    }
  }

  /**
   * Points `name` at one image (a manifest with its platform) or at what another name points at
   * (`builder tag`), replacing whatever it named before (every platform): a build's result.
   */
  async tag(name: string, target: PlatformManifest | Descriptor): Promise<void> {
    // A rebuild from the cache names the same image again: nothing to write.
    const current = entryOf(await this.read(), name);
    if (current && JSON.stringify(current) === JSON.stringify(entryFor(name, target))) return;
    await this.update((index) => named(index, name, target));
  }

  /** Removes `name`; whether it was there. Its blobs stay, for prune to collect once nothing names them. */
  async untag(name: string): Promise<boolean> {
    let found = false;
    await this.update((index) => {
      found = entryOf(index, name) !== undefined;
      return { ...index, manifests: index.manifests.filter((d) => d.annotations?.[REF_NAME] !== name) };
    });
    return found;
  }

  /**
   * Names a pulled manifest for its platform. The name keeps its manifests for other platforms
   * only when `sameIndex` lists them (they came from the registry index this one came from);
   * otherwise the tag has moved, and the name now means the new image alone.
   */
  async tagPlatform(name: string, manifest: PlatformManifest, sameIndex: ReadonlySet<Digest>, blobs: Blobs): Promise<void> {
    for (;;) {
      const current = await this.get(name);
      const kept = current
        ? (await manifestsOf(current, blobs).catch(() => [])).filter(
            (d) => sameIndex.has(d.digest) && d.digest !== manifest.digest && platformRank(d.platform as Platform, manifest.platform) !== 0,
          )
        : [];
      const target = kept.length === 0 ? manifest : await writeIndex([...kept, manifest], blobs);
      let unchanged = false;
      await this.update((index) => {
        unchanged = entryOf(index, name)?.digest === current?.digest;
        return unchanged ? named(index, name, target) : index;
      });
      // Another tagging of this name came in between: merge with what it wrote.
      if (unchanged) return;
    }
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
      // Synchronous: a small file every build reads (base images, the final tag), see state.ts.
      return JSON.parse(readFileSync(this.indexFile, 'utf8')) as ImageIndex;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
    }
  }

  private async write(index: ImageIndex): Promise<void> {
    writeFileAtomicSync(this.indexFile, JSON.stringify(index, null, 2));
  }
}

function entryOf(index: ImageIndex, name: string): Descriptor | undefined {
  return index.manifests.find((d) => d.annotations?.[REF_NAME] === name);
}

/** `index` with `name` pointing at `target` alone. */
function named(index: ImageIndex, name: string, target: Descriptor): ImageIndex {
  const others = index.manifests.filter((d) => d.annotations?.[REF_NAME] !== name);
  return { ...index, manifests: [...others, entryFor(name, target)] };
}

/** The index entry naming `target` `name`. */
function entryFor(name: string, target: Descriptor): Descriptor {
  return {
    mediaType: target.mediaType,
    digest: target.digest,
    size: target.size,
    ...(target.platform ? { platform: target.platform } : {}),
    annotations: { [REF_NAME]: name },
  };
}

/** The platform manifests a name's target stands for: itself, or the entries of its index. */
async function manifestsOf(target: Descriptor, blobs: Pick<Blobs, 'readJson'>): Promise<PlatformManifest[]> {
  if (isIndexMediaType(target.mediaType)) {
    const index = await blobs.readJson<ImageIndex>(target.digest);
    return index.manifests.filter((d): d is PlatformManifest => d.platform !== undefined);
  }
  const { annotations: _name, ...manifest } = target;
  if (manifest.platform) return [manifest as PlatformManifest];
  // Named before names carried their platform: the image config says it.
  const config = await blobs.readJson<ImageConfigFile>((await blobs.readJson<ImageManifest>(target.digest)).config.digest);
  return [{ ...manifest, platform: platformOf(config) }];
}

async function writeIndex(manifests: PlatformManifest[], blobs: Blobs): Promise<Descriptor> {
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
  return { mediaType: MediaType.OciIndex, ...(await blobs.putBytes(JSON.stringify(index))) };
}

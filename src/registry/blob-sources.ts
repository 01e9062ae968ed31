// Which repositories a blob was pulled from, so a push to another repository of the same registry
// can ask for a cross-repository mount (`POST …/blobs/uploads/?mount=DIGEST&from=REPO`) instead of
// uploading the bytes again, as docker's and containerd's distribution source labels do.
//
// Kept in one small JSON file in the state directory ({digest: ["registry/repository", …]}), read
// and written by the build that holds the state lock.

import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../oci/types.js';
import type { ImageReference } from './reference.js';

const FILE = 'blob-sources.json';
/** Repositories remembered per blob, newest first. */
const MAX_SOURCES_PER_BLOB = 8;
/** Blobs remembered in all; the oldest entries go first. */
const MAX_BLOBS = 20_000;

export class BlobSources {
  readonly path: string;
  private data: Promise<Map<string, string[]>> | undefined;
  /** Writes of this instance, one after another: a later one never lands before an earlier one. */
  private written: Promise<void> = Promise.resolve();

  constructor(stateRoot: string) {
    this.path = join(stateRoot, FILE);
  }

  /** Records that the blobs came from `ref`'s repository. */
  async record(ref: ImageReference, digests: readonly Digest[]): Promise<void> {
    const map = await this.load();
    const name = `${ref.registry}/${ref.repository}`;
    let changed = false;
    for (const digest of digests) {
      const list = map.get(digest) ?? [];
      if (list[0] === name) continue;
      map.delete(digest); // re-insert: Map order is the eviction order
      map.set(digest, [name, ...list.filter((n) => n !== name)].slice(0, MAX_SOURCES_PER_BLOB));
      changed = true;
    }
    if (!changed) return;
    while (map.size > MAX_BLOBS) map.delete(map.keys().next().value as string);
    this.written = this.written.then(async () => {
      const tmp = `${this.path}.${randomBytes(6).toString('hex')}`;
      try {
        await writeFile(tmp, JSON.stringify(Object.fromEntries(map)));
        await rename(tmp, this.path);
      } catch {
        await rm(tmp, { force: true });
        // Only an optimisation: a push without it uploads instead of mounting.
      }
    });
    await this.written;
  }

  /** A repository on `target`'s registry, other than its own, that the blob came from. */
  async mountSource(digest: Digest, target: ImageReference): Promise<string | undefined> {
    const prefix = `${target.registry}/`;
    for (const name of (await this.load()).get(digest) ?? []) {
      if (!name.startsWith(prefix)) continue;
      const repository = name.slice(prefix.length);
      if (repository !== target.repository) return repository;
    }
    return undefined;
  }

  private load(): Promise<Map<string, string[]>> {
    this.data ??= readFile(this.path, 'utf8').then(
      (text) => {
        try {
          const obj = JSON.parse(text) as Record<string, unknown>;
          return new Map(
            Object.entries(obj).filter((e): e is [string, string[]] => Array.isArray(e[1]) && e[1].every((n) => typeof n === 'string')),
          );
        } catch {
          return new Map<string, string[]>();
        }
      },
      () => new Map<string, string[]>(),
    );
    return this.data;
  }
}

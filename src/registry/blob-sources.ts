// Which repositories a blob was pulled from, so a push to another repository of the same registry
// can ask for a cross-repository mount (`POST …/blobs/uploads/?mount=DIGEST&from=REPO`) instead of
// uploading the bytes again, as docker's and containerd's distribution source labels do.
//
// Kept in one small JSON file in the state directory ({digest: ["registry/repository", …]}), read
// and written by every build using that directory (each merges its records into the file as it is).

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../oci/types.js';
import { writeFileAtomic } from '../util/write-file.js';
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
    const name = `${ref.registry}/${ref.repository}`;
    const known = await this.load();
    if (digests.every((digest) => known.get(digest)?.[0] === name)) return;
    this.written = this.written.then(async () => {
      // Merged into the file as it is now, not as this instance first read it: builds sharing the
      // state directory record their pulls in the same file, and would lose each other's.
      const map = await readSources(this.path);
      remember(map, name, digests);
      this.data = Promise.resolve(map);
      // Only an optimisation: a push without it uploads instead of mounting.
      await writeFileAtomic(this.path, JSON.stringify(Object.fromEntries(map))).catch(() => {});
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
    this.data ??= readSources(this.path);
    return this.data;
  }
}

/** Puts `name` first in each blob's list; a blob recorded again moves to the end of the eviction order. */
function remember(map: Map<string, string[]>, name: string, digests: readonly Digest[]): void {
  for (const digest of digests) {
    const list = map.get(digest) ?? [];
    map.delete(digest); // re-insert: Map order is the eviction order
    map.set(digest, [name, ...list.filter((n) => n !== name)].slice(0, MAX_SOURCES_PER_BLOB));
  }
  while (map.size > MAX_BLOBS) map.delete(map.keys().next().value as string);
}

/** The file's map; empty when it is missing or unreadable. */
async function readSources(path: string): Promise<Map<string, string[]>> {
  try {
    const obj = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    return new Map(Object.entries(obj).filter((e): e is [string, string[]] => Array.isArray(e[1]) && e[1].every((n) => typeof n === 'string')));
  } catch {
    return new Map<string, string[]>();
  }
}

// Content checksums of the files a COPY selects: the part of a cache key that reads content.
// What counts: relative paths, types, permission bits, symlink targets, file bytes and (when the
// copy keeps them) owners. What never counts: mtimes, so touching a file keeps the cache.
// Re-hashing a large context costs about one lstat per file: file digests are remembered by
// (size, mtime, ctime, inode) in a StatCache. Which files are selected is src/util/select.ts.

import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Digest } from '../oci/types.js';
import { walk, type Source, type SourceFilter, type WalkEntry } from '../util/select.js';
import { writeFileAtomic } from '../util/write-file.js';

/** Remembers file digests by stat fields; persisted as one JSON file per source root. */
export class StatCache {
  private entries = new Map<string, { k: string; d: Digest }>();
  private dirty = false;

  private constructor(private readonly file: string | undefined) {}

  static memory(): StatCache {
    return new StatCache(undefined);
  }

  static async load(cacheDir: string, sourceRoot: string): Promise<StatCache> {
    const id = createHash('sha256').update(sourceRoot).digest('hex').slice(0, 32);
    const cache = new StatCache(join(cacheDir, `${id}.json`));
    try {
      const data = JSON.parse(await readFile(cache.file!, 'utf8')) as Record<string, { k: string; d: Digest }>;
      cache.entries = new Map(Object.entries(data));
    } catch {
      // no cache yet, or unreadable: start empty
    }
    return cache;
  }

  async fileDigest(entry: WalkEntry): Promise<Digest> {
    const hit = this.entries.get(entry.abs);
    if (hit && hit.k === entry.statKey) return hit.d;
    const digest = await hashFile(entry.abs, entry.size);
    // A file changed while being hashed gets a new ctime: only remember stable reads.
    const after = await stat(entry.abs, { bigint: true });
    if (`${after.size}:${after.mtimeNs}:${after.ctimeNs}:${after.ino}` === entry.statKey) {
      this.entries.set(entry.abs, { k: entry.statKey, d: digest });
      this.dirty = true;
    }
    return digest;
  }

  async save(): Promise<void> {
    if (!this.file || !this.dirty) return;
    await mkdir(dirname(this.file), { recursive: true });
    await writeFileAtomic(this.file, JSON.stringify(Object.fromEntries(this.entries)));
    this.dirty = false;
  }
}

const SMALL_FILE = 1 << 20;

async function hashFile(path: string, size: number): Promise<Digest> {
  const hash = createHash('sha256');
  // Most context files are small: one read beats a stream's setup; large ones are streamed.
  if (size < SMALL_FILE) hash.update(readFileSync(path));
  else for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

export interface ChecksumOptions extends SourceFilter {
  statCache: StatCache;
  /** Owners are kept by the copy (COPY --from another stage): they count. */
  includeOwners: boolean;
  /** Sees each entry hashed: its path, type and mode (and owner), and content digest or link target. */
  onEntry?: (rel: string, kind: string, content: string) => void;
}

/** The checksum of exactly the selected sources (already expanded by selectSources). */
export async function checksumSources(root: string, sources: readonly Source[], opts: ChecksumOptions): Promise<Digest> {
  const hash = createHash('sha256');
  for (const source of sources) {
    hash.update(`source\0${source.name}\0${source.path}\n`);
    for (const e of walk(root, source.path, opts)) {
      let content = '';
      if (e.type === 'file') content = await opts.statCache.fileDigest(e);
      // Synchronous: microseconds, where a thread-pool round trip per link costs more.
      else if (e.type === 'symlink') content = readlinkSync(e.abs);
      const owner = opts.includeOwners ? `${e.uid}:${e.gid}` : '';
      const mode = (e.mode & 0o7777).toString(8);
      hash.update(`${e.rel}\0${e.type}\0${mode}\0${owner}\0${content}\n`);
      opts.onEntry?.(e.rel, `${e.type} ${mode}${owner ? ` ${owner}` : ''}`, content);
    }
  }
  return `sha256:${hash.digest('hex')}`;
}

// Content checksums of the files a COPY selects: the part of a cache key that reads content.
// What counts: relative paths, types, permission bits, symlink targets, file bytes and (when the
// copy keeps them) owners. What never counts: mtimes, so touching a file keeps the cache.
// Re-hashing a large context costs about one lstat per file: file digests are remembered by
// (size, mtime, ctime, inode) in a StatCache.

import type { Ignore } from '@balena/dockerignore';
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { createReadStream, lstatSync, readFileSync, readdirSync } from 'node:fs';
import { lstat, mkdir, readFile, readlink, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import type { Digest } from '../oci/types.js';

// The package is CommonJS (`module.exports = factory`) but its types declare a default export.
const ignore = createRequire(import.meta.url)('@balena/dockerignore') as (options?: { ignorecase?: boolean }) => Ignore;

export type PathFilter = (relPath: string) => boolean;

/** A `.dockerignore` matcher with Docker's rules; `undefined` when nothing is excluded. */
export function dockerignoreFilter(patterns: readonly string[]): { excluded: PathFilter; hasExceptions: boolean } | undefined {
  if (patterns.length === 0) return undefined;
  const ig = ignore({ ignorecase: false }).add([...patterns]);
  return { excluded: (p) => ig.ignores(p), hasExceptions: patterns.some((p) => p.startsWith('!')) };
}

export class SourceNotFoundError extends Error {
  constructor(readonly path: string) {
    super(`"${path}": not found`);
    this.name = 'SourceNotFoundError';
  }
}

const GLOB_CHARS = /[*?[\\]/;

/** Cleans a source path the way Docker does: relative to the root, no `.`/`..` escaping it. */
export function cleanSourcePath(p: string): string {
  const cleaned = posix.normalize(`/${p}`).replace(/^\/+/, '');
  return cleaned === '' ? '.' : cleaned.replace(/\/+$/, '');
}

export interface SourceFilter {
  excluded?: PathFilter;
  /** With `!` exceptions an excluded directory may still hold included files: descend anyway. */
  hasExceptions?: boolean;
}

/**
 * Expands COPY sources against `root`: wildcards with Docker's rules (`*` does not cross `/`),
 * plain paths must exist. Returns root-relative paths in a stable order.
 */
export async function selectSources(root: string, patterns: readonly string[], filter: SourceFilter = {}): Promise<string[]> {
  const out: string[] = [];
  for (const raw of patterns) {
    const pattern = cleanSourcePath(raw);
    if (GLOB_CHARS.test(pattern)) {
      // Loaded on first use: most builds have no wildcard COPY and start faster without it.
      const { default: fg } = await import('fast-glob');
      const matches = await fg(pattern, { cwd: root, dot: true, onlyFiles: false, followSymbolicLinks: false, unique: true });
      const kept = matches.filter((m) => !filter.excluded?.(m)).sort();
      out.push(...kept);
      continue;
    }
    if (pattern !== '.' && filter.excluded?.(pattern)) throw new SourceNotFoundError(pattern);
    try {
      await lstat(join(root, pattern));
    } catch {
      throw new SourceNotFoundError(pattern);
    }
    out.push(pattern);
  }
  return [...new Set(out)];
}

export interface WalkEntry {
  /** Path relative to the walk root, `/`-separated. */
  rel: string;
  abs: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** The stat fields that key the StatCache. */
  statKey: string;
}

/** Walks `rel` (file or directory) under `root` depth-first in byte order, skipping excluded paths. */
export async function* walk(root: string, rel: string, filter: SourceFilter = {}): AsyncGenerator<WalkEntry> {
  const abs = rel === '.' ? root : join(root, rel);
  // Synchronous: one lstat costs microseconds, a thread-pool round trip per file much more.
  const st = lstatSync(abs, { bigint: true });
  const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
  const excluded = rel !== '.' && filter.excluded?.(rel) === true;
  if (!excluded) {
    yield {
      rel,
      abs,
      type,
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: Number(st.size),
      statKey: `${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}`,
    };
  }
  if (type !== 'dir' || (excluded && !filter.hasExceptions)) return;
  const names = readdirSync(abs).sort(compareBytes);
  for (const name of names) yield* walk(root, rel === '.' ? name : `${rel}/${name}`, filter);
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

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
    const tmp = `${this.file}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(Object.fromEntries(this.entries)));
    await rename(tmp, this.file);
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
}

/** The checksum of exactly the selected sources (already expanded by selectSources). */
export async function checksumSources(root: string, sources: readonly string[], opts: ChecksumOptions): Promise<Digest> {
  const hash = createHash('sha256');
  for (const source of sources) {
    hash.update(`source\0${source}\n`);
    for await (const e of walk(root, source, opts)) {
      let content = '';
      if (e.type === 'file') content = await opts.statCache.fileDigest(e);
      else if (e.type === 'symlink') content = await readlink(e.abs);
      const owner = opts.includeOwners ? `${e.uid}:${e.gid}` : '';
      hash.update(`${e.rel}\0${e.type}\0${(e.mode & 0o7777).toString(8)}\0${owner}\0${content}\n`);
    }
  }
  return `sha256:${hash.digest('hex')}`;
}

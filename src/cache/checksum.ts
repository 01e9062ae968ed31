// Content checksums of the files a COPY selects: the part of a cache key that reads content.
// What counts: relative paths, types, permission bits, symlink targets, file bytes and (when the
// copy keeps them) owners. What never counts: mtimes, so touching a file keeps the cache.
// Re-hashing a large context costs about one lstat per file: file digests are remembered by
// (size, mtime, ctime, inode) in a StatCache. Which files are selected is src/util/select.ts.

import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Digest } from '../oci/types.js';
import { rootPrefix, sameStatKey, walk, type Source, type SourceFilter, type WalkEntry } from '../util/select.js';
import { writeFileAtomic } from '../util/write-file.js';

/** What the cache remembers of a file: the stat fields of the version it hashed, and the digest. */
interface Remembered {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  /** The sha256 digest, hex. */
  hex: string;
}

// The file, one per source root: MAGIC, then one record per file, sorted by path:
//   u16 bytes shared with the previous path, u16 bytes that follow, those bytes (UTF-8),
//   f64 size, mtimeMs, ctimeMs, ino, 32 bytes of sha256.
// Paths are relative to the root; files outside it (another build context) are absolute.
// Binary and prefix-shared: a 7.5k-file context loads in a few milliseconds, where parsing its
// JSON took tens, and takes about half the space.
const MAGIC = Buffer.from('builder stat cache 2\n');
const NUMBERS = 4 * 8;
const SHA256 = 32;

/**
 * Remembers file digests by stat fields, by absolute path; persisted as one file per source
 * root. Files outside the root (another context, a stage's files) are kept only while builds use
 * them: a stage's files are read at a new path each time and would otherwise pile up.
 */
export class StatCache {
  private entries = new Map<string, Remembered>();
  /** Loaded entries outside the root: saved again only when used (then moved to `entries`). */
  private outside = new Map<string, Remembered>();
  private dirty = false;

  private constructor(
    private readonly file: string | undefined,
    /** The source root's path with a trailing `/` (see rootPrefix): stored paths are relative to it. */
    private readonly prefix: string,
  ) {}

  static memory(): StatCache {
    return new StatCache(undefined, '/');
  }

  static async load(cacheDir: string, sourceRoot: string): Promise<StatCache> {
    const id = createHash('sha256').update(sourceRoot).digest('hex').slice(0, 32);
    const cache = new StatCache(join(cacheDir, `${id}.stat`), rootPrefix(sourceRoot));
    try {
      decode(await readFile(cache.file!), (path, e) => {
        if (path.startsWith('/')) cache.outside.set(path, e);
        else cache.entries.set(cache.prefix + path, e);
      });
    } catch {
      // no cache yet, or unreadable: start empty
    }
    return cache;
  }

  /** The digest remembered for `entry` (a regular file) when its stat fields still match. */
  cached(entry: WalkEntry): Digest | undefined {
    const hit = this.entries.get(entry.abs) ?? this.adopt(entry.abs);
    const st = entry.stats;
    if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs && hit.ctimeMs === st.ctimeMs && hit.ino === st.ino) return `sha256:${hit.hex}`;
    return undefined;
  }

  private adopt(abs: string): Remembered | undefined {
    const e = this.outside.get(abs);
    if (e !== undefined) {
      this.outside.delete(abs);
      this.entries.set(abs, e);
    }
    return e;
  }

  async fileDigest(entry: WalkEntry): Promise<Digest> {
    const cached = this.cached(entry);
    if (cached !== undefined) return cached;
    const hex = await hashFile(entry.abs, entry.size);
    // A file changed while being hashed gets a new ctime: only remember stable reads.
    const st = entry.stats;
    if (sameStatKey(statSync(entry.abs), st)) {
      this.entries.set(entry.abs, { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, hex });
      this.dirty = true;
    }
    return `sha256:${hex}`;
  }

  async save(): Promise<void> {
    if (!this.file || !this.dirty) return;
    await mkdir(dirname(this.file), { recursive: true });
    await writeFileAtomic(this.file, encode(this.entries, this.prefix));
    // The JSON file of earlier versions, keyed by the same root.
    await rm(this.file.replace(/\.stat$/, '.json'), { force: true });
    this.dirty = false;
  }
}

function encode(entries: ReadonlyMap<string, Remembered>, prefix: string): Buffer {
  const paths = [...entries.keys()].map((abs) => (abs.startsWith(prefix) ? abs.slice(prefix.length) : abs)).sort();
  const chunks: Buffer[] = [MAGIC];
  let previous = Buffer.alloc(0);
  for (const path of paths) {
    const bytes = Buffer.from(path);
    const e = entries.get(path.startsWith('/') ? path : prefix + path)!;
    // A path longer than a u16 (far beyond PATH_MAX) is not worth remembering.
    if (bytes.length > 0xffff) continue;
    let shared = 0;
    while (shared < bytes.length && shared < previous.length && bytes[shared] === previous[shared]) shared++;
    const record = Buffer.allocUnsafe(4 + bytes.length - shared + NUMBERS + SHA256);
    let o = record.writeUInt16LE(shared, 0);
    o = record.writeUInt16LE(bytes.length - shared, o);
    o += bytes.copy(record, o, shared);
    for (const n of [e.size, e.mtimeMs, e.ctimeMs, e.ino]) o = record.writeDoubleLE(n, o);
    record.write(e.hex, o, 'hex');
    chunks.push(record);
    previous = bytes;
  }
  return Buffer.concat(chunks);
}

/** Reads the entries of a file that encode() wrote (paths as stored); throws when it is not one. */
function decode(data: Buffer, add: (path: string, e: Remembered) => void): void {
  if (!data.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not a stat cache of this version');
  const path = Buffer.alloc(0x10000 * 2);
  let o = MAGIC.length;
  while (o < data.length) {
    const shared = data.readUInt16LE(o);
    const rest = data.readUInt16LE(o + 2);
    o += 4;
    if (o + rest + NUMBERS + SHA256 > data.length) throw new Error('truncated stat cache');
    data.copy(path, shared, o, o + rest);
    o += rest;
    add(path.toString('utf8', 0, shared + rest), {
      size: data.readDoubleLE(o),
      mtimeMs: data.readDoubleLE(o + 8),
      ctimeMs: data.readDoubleLE(o + 16),
      ino: data.readDoubleLE(o + 24),
      hex: data.toString('hex', o + NUMBERS, o + NUMBERS + SHA256),
    });
    o += NUMBERS + SHA256;
  }
}

const SMALL_FILE = 1 << 20;

/** The sha256 of a file's bytes, hex. */
async function hashFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  // Most context files are small: one read beats a stream's setup; large ones are streamed.
  if (size < SMALL_FILE) hash.update(readFileSync(path));
  else for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export interface ChecksumOptions extends SourceFilter {
  statCache: StatCache;
  /** Owners are kept by the copy (COPY --from another stage): they count. */
  includeOwners: boolean;
  /** Sees each entry hashed: its path, type and mode (and owner), and content digest or link target. */
  onEntry?: (rel: string, kind: string, content: string) => void;
}

/** Bytes of hashed lines gathered before one hash update: one call per line cost more than the hashing. */
const BATCH = 1 << 16;

/** The checksum of exactly the selected sources (already expanded by selectSources). */
export async function checksumSources(root: string, sources: readonly Source[], opts: ChecksumOptions): Promise<Digest> {
  const hash = createHash('sha256');
  let lines = '';
  for (const source of sources) {
    lines += `source\0${source.name}\0${source.path}\n`;
    for (const e of walk(root, source.path, opts)) {
      let content = '';
      // Awaited only on a miss: a remembered digest costs no trip through the event loop.
      if (e.type === 'file') content = opts.statCache.cached(e) ?? (await opts.statCache.fileDigest(e));
      // Synchronous: microseconds, where a thread-pool round trip per link costs more.
      else if (e.type === 'symlink') content = readlinkSync(e.abs);
      const st: Stats = e.stats;
      const owner = opts.includeOwners ? `${st.uid}:${st.gid}` : '';
      const mode = (st.mode & 0o7777).toString(8);
      lines += `${e.rel}\0${e.type}\0${mode}\0${owner}\0${content}\n`;
      if (lines.length >= BATCH) {
        hash.update(lines);
        lines = '';
      }
      opts.onEntry?.(e.rel, `${e.type} ${mode}${owner ? ` ${owner}` : ''}`, content);
    }
  }
  return `sha256:${hash.update(lines).digest('hex')}`;
}

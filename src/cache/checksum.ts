// Content checksums of the files a COPY selects: the part of a cache key that reads content.
// What counts: relative paths, types, permission bits, symlink targets, file bytes and (when the
// copy keeps them) owners. What never counts: mtimes, so touching a file keeps the cache.
// Re-hashing a large context costs about one lstat per file: file digests are remembered by
// (size, mtime, ctime, inode) in a StatCache. Which files are selected is src/util/select.ts.
//
// A file changed within the same timestamp tick as it was hashed keeps its stat key (same size,
// same coarse mtime and ctime) with new content. As git does with "racily clean" entries, a digest
// is remembered across builds only when the file's last change is well before it was read.

import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Digest } from '../oci/types.js';
import {
  racyStatKey,
  rootPrefix,
  sameStatKey,
  walk,
  KeptWalk,
  type Source,
  type SourceFilter,
  type StatKeyFields,
  type WalkEntry,
} from '../util/select.js';
import { writeFileAtomic } from '../util/write-file.js';

/** What the cache remembers of a file: the stat fields of the version it hashed, and the digest. */
interface Remembered extends StatKeyFields {
  /** The sha256 digest, hex. */
  hex: string;
  /** Changed too shortly before it was read to be told apart from a change right after: not saved. */
  racy?: boolean;
}

export interface StatCacheOptions {
  /** The clock reads are compared with (ms since the epoch); tests move it. */
  now?: () => number;
}

/**
 * Remembers file digests by stat fields, by absolute path; persisted as one file per source
 * root. Files outside the root (another context, a stage's files) are kept only while builds use
 * them: a stage's files are read at a new path each time and would otherwise pile up.
 */
export class StatCache {
  /** Digests hashed by this process. */
  private readonly hashed = new Map<string, Remembered>();
  private dirty = false;

  private constructor(
    private readonly file: string | undefined,
    /** The source root's path with a trailing `/` (see rootPrefix): stored paths are relative to it. */
    private readonly prefix: string,
    /** What the file held when loaded. */
    private readonly stored: Stored = Stored.EMPTY,
    private readonly now: () => number = Date.now,
  ) {}

  static memory(): StatCache {
    return new StatCache(undefined, '/');
  }

  static async load(cacheDir: string, sourceRoot: string, opts: StatCacheOptions = {}): Promise<StatCache> {
    const id = createHash('sha256').update(sourceRoot).digest('hex').slice(0, 32);
    const file = join(cacheDir, `${id}.stat`);
    const prefix = rootPrefix(sourceRoot);
    let stored: Stored | undefined;
    try {
      // Synchronous: one file, read before the walk that needs it can start.
      stored = Stored.decode(readFileSync(file), prefix);
    } catch {
      // no cache yet, or unreadable: start empty
    }
    return new StatCache(file, prefix, stored, opts.now);
  }

  /** The digest remembered for `entry` (a regular file) when its stat fields still match. */
  cached(entry: WalkEntry): Digest | undefined {
    const h = this.hashed.get(entry.abs);
    if (h === undefined) return this.stored.digest(entry.abs, entry);
    return sameStatKey(h, entry) ? `sha256:${h.hex}` : undefined;
  }

  async fileDigest(entry: WalkEntry): Promise<Digest> {
    const cached = this.cached(entry);
    if (cached !== undefined) return cached;
    const readAt = this.now();
    const hex = await hashFile(entry.abs, entry.size);
    // A file changed while being hashed gets a new ctime: only remember stable reads.
    if (sameStatKey(statSync(entry.abs), entry)) {
      const racy = racyStatKey(entry, readAt);
      this.hashed.set(entry.abs, { size: entry.size, mtimeMs: entry.mtimeMs, ctimeMs: entry.ctimeMs, ino: entry.ino, hex, ...(racy && { racy }) });
      if (!racy) this.dirty = true;
    }
    return `sha256:${hex}`;
  }

  async save(): Promise<void> {
    if (!this.file || !this.dirty) return;
    // Loaded entries are copied from the loaded columns as they are: no round trip through hex.
    const entries = new Map<string, Remembered | number>(this.stored.kept());
    for (const [abs, e] of this.hashed) if (!e.racy) entries.set(abs, e);
    await mkdir(dirname(this.file), { recursive: true });
    await writeFileAtomic(this.file, encode(entries, this.prefix, this.stored));
    // The JSON file of earlier versions, keyed by the same root.
    await rm(this.file.replace(/\.stat$/, '.json'), { force: true });
    this.dirty = false;
  }
}

/**
 * Throws, saying what is wrong, unless `file` holds a stat cache this version reads, or one of an
 * older version, which the next build replaces (see `builder doctor`).
 */
export function checkStatCacheFile(file: Buffer): void {
  if (!olderVersion(file)) Stored.decode(file, '/');
}

// The file: HEADER (16 bytes), u32 count, u32 bytes of paths, then one column per field, so
// that loading is one split of the paths and the rest is read in place:
//   f64 × 4 per file: size, mtimeMs, ctimeMs, ino (native byte order: a foreign file only misses)
//   32 bytes per file: the sha256
//   the paths, UTF-8, NUL-separated, in the order of the columns
// Paths are relative to the root; files outside it are absolute. Whole paths (version 2 kept
// only what differed from the previous one) load as slices of one string, keys of the index as
// they are: a 7.5k-file context's cache loads in about half the time, with a third fewer objects.
const HEADER = Buffer.from('builder stat v3\n');
/** Files of the previous version: readable no more, replaced by the next build that saves. */
const OLDER_HEADERS = [Buffer.from('builder stat v2\n')];
const TOP = HEADER.length + 8;
const NUMBERS = 4;
const SHA256 = 32;

/** The entries a cache file held: stat fields and digests stay in the file's bytes until asked for. */
class Stored {
  static readonly EMPTY = new Stored('/', new Map(), new Float64Array(0), Buffer.alloc(0), new Set());
  /** Entries outside the root that were used, and so are saved again. */
  private readonly used = new Set<string>();

  private constructor(
    /** The root with a trailing `/`: paths below it are keys without it. */
    private readonly prefix: string,
    /** Stored path (relative below the root, else absolute) → index in the columns. */
    private readonly index: ReadonlyMap<string, number>,
    private readonly numbers: Float64Array,
    private readonly digests: Buffer,
    /** The absolute paths of entries outside the root. */
    private readonly outside: ReadonlySet<string>,
  ) {}

  /** Reads a file that encode() wrote; throws when it is not one. */
  static decode(file: Buffer, prefix: string): Stored {
    if (file.length < TOP || !file.subarray(0, HEADER.length).equals(HEADER)) throw new Error('not a stat cache of this version');
    const count = file.readUInt32LE(HEADER.length);
    const pathBytes = file.readUInt32LE(HEADER.length + 4);
    if (file.length !== TOP + count * (NUMBERS * 8 + SHA256) + pathBytes) throw new Error('truncated stat cache');
    // Typed arrays need aligned offsets: a copy starts at offset 0 of its own memory.
    const data = file.byteOffset % 8 === 0 ? file : Buffer.from(new Uint8Array(file));
    let at = data.byteOffset + TOP;
    const numbers = new Float64Array(data.buffer, at, count * NUMBERS);
    at += count * NUMBERS * 8;
    const digests = Buffer.from(data.buffer, at, count * SHA256);
    at += count * SHA256;
    const paths = count === 0 ? [] : Buffer.from(data.buffer, at, pathBytes).toString('utf8').split('\0');
    if (paths.length !== count) throw new Error('corrupt stat cache');
    const index = new Map<string, number>();
    const outside = new Set<string>();
    for (let i = 0; i < count; i++) {
      const path = paths[i]!;
      index.set(path, i);
      if (path.startsWith('/')) outside.add(path);
    }
    return new Stored(prefix, index, numbers, digests, outside);
  }

  digest(abs: string, st: StatKeyFields): Digest | undefined {
    if (this.index.size === 0) return undefined;
    const i = this.index.get(abs.startsWith(this.prefix) ? abs.slice(this.prefix.length) : abs);
    if (i === undefined) return undefined;
    const n = this.numbers;
    const o = i * NUMBERS;
    if (n[o] !== st.size || n[o + 1] !== st.mtimeMs || n[o + 2] !== st.ctimeMs || n[o + 3] !== st.ino) return undefined;
    if (this.outside.size > 0 && this.outside.has(abs)) this.used.add(abs);
    return `sha256:${this.digests.toString('hex', i * SHA256, (i + 1) * SHA256)}`;
  }

  /** The entries to save again, by absolute path and index: those under the root, and those outside it that were used. */
  *kept(): Generator<[string, number]> {
    for (const [path, i] of this.index) {
      if (!path.startsWith('/')) yield [this.prefix + path, i];
      else if (this.used.has(path)) yield [path, i];
    }
  }

  /** Copies entry `i`'s stat fields and digest to position `j` of another file's columns. */
  copy(i: number, numbers: Float64Array, digests: Buffer, j: number): void {
    numbers.set(this.numbers.subarray(i * NUMBERS, (i + 1) * NUMBERS), j * NUMBERS);
    this.digests.copy(digests, j * SHA256, i * SHA256, (i + 1) * SHA256);
  }
}

/** Whether `file` starts as a stat cache of an older version, which a build replaces (see `builder doctor`). */
function olderVersion(file: Buffer): boolean {
  return OLDER_HEADERS.some((h) => file.length >= h.length && file.subarray(0, h.length).equals(h));
}

/** The file's bytes for `entries`: each either new, or the index of a loaded one in `stored`. */
function encode(entries: ReadonlyMap<string, Remembered | number>, prefix: string, stored: Stored): Buffer {
  // A relative path outside the root could not be told from one below it: not kept.
  const paths = [...entries.keys()].flatMap((abs) => (abs.startsWith(prefix) ? [abs.slice(prefix.length)] : abs.startsWith('/') ? [abs] : [])).sort();
  const count = paths.length;
  const numbers = new Float64Array(count * NUMBERS);
  const digests = Buffer.alloc(count * SHA256);
  paths.forEach((path, j) => {
    const e = entries.get(path.startsWith('/') ? path : prefix + path)!;
    if (typeof e === 'number') stored.copy(e, numbers, digests, j);
    else {
      const o = j * NUMBERS;
      numbers[o] = e.size;
      numbers[o + 1] = e.mtimeMs;
      numbers[o + 2] = e.ctimeMs;
      numbers[o + 3] = e.ino;
      digests.write(e.hex, j * SHA256, 'hex');
    }
  });
  const pathBytes = Buffer.from(paths.join('\0'));
  const head = Buffer.alloc(TOP);
  HEADER.copy(head);
  head.writeUInt32LE(count, HEADER.length);
  head.writeUInt32LE(pathBytes.length, HEADER.length + 4);
  return Buffer.concat([head, new Uint8Array(numbers.buffer), digests, pathBytes]);
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
  /**
   * Keeps each source's walk, by source path: a copy of the same selection takes its entries
   * from here instead of walking the tree again.
   */
  keepWalks?: Map<string, KeptWalk>;
}

/** Permission bits in octal, formatted once per value: a context has few distinct modes and many files. */
const OCTAL = new Array<string | undefined>(0o10000);
function octal(bits: number): string {
  return (OCTAL[bits] ??= bits.toString(8));
}

/** `type mode` (see onEntry) for entries without an owner, made once per pair. */
const KINDS = new Map<string, Array<string | undefined>>();
function kindOf(type: string, bits: number): string {
  let byMode = KINDS.get(type);
  if (!byMode) KINDS.set(type, (byMode = new Array<string | undefined>(0o10000)));
  return (byMode[bits] ??= `${type} ${octal(bits)}`);
}

/** Bytes of hashed lines gathered before one hash update: one call per line cost more than the hashing. */
const BATCH = 1 << 16;

/**
 * The checksum of exactly the selected sources (already expanded by selectSources): sha256 over
 * one line per source, `source\0NAME\0PATH\n`, followed by one line per entry it selects,
 * `REL\0TYPE\0MODE\0OWNER\0CONTENT\n` (UTF-8; MODE the permission bits in octal; OWNER
 * `uid:gid` or empty; CONTENT `sha256:HEX` for a file, the target for a symlink, else empty).
 * Cache keys are made of these bytes: a change to them would miss every cache made before it.
 */
export async function checksumSources(root: string, sources: readonly Source[], opts: ChecksumOptions): Promise<Digest> {
  const hash = createHash('sha256');
  let lines = '';
  const prefix = rootPrefix(root);
  for (const source of sources) {
    lines += `source\0${source.name}\0${source.path}\n`;
    let kept: KeptWalk | undefined;
    if (opts.keepWalks) opts.keepWalks.set(source.path, (kept = new KeptWalk(prefix)));
    for (const e of walk(root, source.path, opts)) {
      kept?.add(e);
      let content = '';
      // Awaited only on a miss: a remembered digest costs no trip through the event loop.
      if (e.type === 'file') content = opts.statCache.cached(e) ?? (await opts.statCache.fileDigest(e));
      // Synchronous: microseconds, where a thread-pool round trip per link costs more.
      else if (e.type === 'symlink') content = readlinkSync(e.abs);
      const owner = opts.includeOwners ? `${e.uid}:${e.gid}` : '';
      const bits = e.mode & 0o7777;
      const mode = octal(bits);
      lines += `${e.rel}\0${e.type}\0${mode}\0${owner}\0${content}\n`;
      if (lines.length >= BATCH) {
        hash.update(lines);
        lines = '';
      }
      if (opts.onEntry) opts.onEntry(e.rel, owner ? `${e.type} ${mode} ${owner}` : kindOf(e.type, bits), content);
    }
  }
  return `sha256:${hash.update(lines).digest('hex')}`;
}

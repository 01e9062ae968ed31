// Which files a COPY/ADD source names: cleaning source paths, wildcards with Docker's rules,
// resolving every source inside its root (BuildKit's FollowSymlinks), the `.dockerignore`
// matcher, and the byte-ordered walk of what was selected. Shared by the solver (which copies
// the selection) and the cache (which checksums it), so it lives below both; it knows nothing
// of either, nor of Dockerfile syntax.

import dockerignore, { type Ignore } from '@balena/dockerignore';
import { constants, lstatSync, readdirSync, type Stats } from 'node:fs';
import { join, posix } from 'node:path';
import { CTIME_MS, GID, INO, lstatNumbers, MODE, MTIME_MS, NLINK, SIZE, UID } from './lstat-numbers.js';
import { resolveComponents } from './scoped-path.js';

// The package is CommonJS (`module.exports = factory`), which an import's default is, but its
// types declare that as a property `default`. Imported rather than required at run time, so
// that the CLI bundle holds it: no module lookup in node_modules when a build starts.
const ignore = dockerignore as unknown as (options?: { ignorecase?: boolean }) => Ignore;

export type PathFilter = (relPath: string) => boolean;

/** A `.dockerignore` matcher with Docker's rules; `undefined` when nothing is excluded. */
export function dockerignoreFilter(patterns: readonly string[]): Required<SourceFilter> | undefined {
  if (patterns.length === 0) return undefined;
  const ig = ignore({ ignorecase: false }).add([...patterns]);
  return { excluded: (p) => ig.ignores(p), hasExceptions: patterns.some((p) => p.startsWith('!')), settled: settledBelow(patterns) };
}

/**
 * For `settled` (see SourceFilter): Docker matches a rule of k components against a path and
 * against the first k components of its parent, so below a directory of m ≥ k components such a
 * rule decides as it did for the directory. A rule of more components can only differ there if
 * the directory's components match its first ones. Only rules whose components are plain globs
 * (`*`, `?`, and characters that mean themselves in the matcher's regexp) are reasoned about;
 * with any other rule nothing is settled.
 */
function settledBelow(patterns: readonly string[]): (dir: string) => boolean {
  const rules: RegExp[][] = [];
  for (const pattern of patterns) {
    // The matcher's own test for a line that is no rule.
    if (!pattern || pattern.indexOf('#') === 0 || pattern.trim() === '') continue;
    let p = pattern.trim();
    if (p.startsWith('!')) p = p.slice(1).trim();
    const parts = posix.normalize(p).replace(/\/+$/, '').replace(/^\/+/, '').split('/');
    if (parts.some((c) => c === '.' || c === '..' || c.includes('**') || !PLAIN_GLOB.test(c))) return () => false;
    rules.push(parts.map((c) => new RegExp(`^${c.replace(/\./g, '\\.').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`)));
  }
  return (dir) => {
    const parts = dir.split('/');
    return rules.every((globs) => globs.length <= parts.length || parts.some((c, i) => !globs[i]!.test(c)));
  };
}

/** A pattern component the walk can reason about: no `**`, classes, escapes or regexp syntax. */
const PLAIN_GLOB = /^[\w.*?@%~,:= -]+$/;

/** A COPY/ADD source that is not there; `path` is relative to the source's root, as written. */
export class SourceNotFoundError extends Error {
  constructor(readonly path: string) {
    // BuildKit's wording, with the path from the root of the context or stage.
    super(`"/${path === '.' ? '' : path}" not found`);
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
  /**
   * True when every path below directory `dir` is excluded exactly when `dir` is: the walk then
   * asks `excluded` nothing more below it (and skips it whole when it is excluded).
   */
  settled?: (dir: string) => boolean;
}

/**
 * One COPY source. `name` is the path the Dockerfile selects (it names the destination and, with
 * --parents, its directories); `path` is where that really is: every symlink on the way, the
 * last component's too, followed as if the root were `/` (BuildKit's FollowSymlinks). Both are
 * root-relative, `.` for the root itself. Only `path` is ever read.
 */
export interface Source {
  name: string;
  path: string;
}

/**
 * Expands COPY sources against `root`: wildcards with Docker's rules (`*` does not cross `/`),
 * plain paths must exist. Every source is resolved inside `root`, so a symlink (`a -> /`,
 * `a -> ../..`) can never make a source outside it: what resolves to nothing there is "not
 * found", as in BuildKit. Excluded paths, and paths reached through an excluded symlink, are not
 * found either, as they would not be in BuildKit's copy of the context. Returns sources in a
 * stable order.
 */
export async function selectSources(root: string, patterns: readonly string[], filter: SourceFilter = {}, opts: { literal?: boolean } = {}): Promise<Source[]> {
  const out = new Map<string, Source>();
  for (const raw of patterns) {
    const pattern = cleanSourcePath(raw);
    // Literal: a RUN --mount source, which BuildKit never expands (`pages/[id].tsx` is a file).
    const glob = opts.literal ? -1 : firstGlobComponent(pattern);
    if (glob < 0) {
      const source = resolveSource(root, pattern, filter);
      if (!source) throw new SourceNotFoundError(pattern);
      out.set(source.name, source);
      continue;
    }
    // The literal directory before the first wildcard is resolved inside the root; the rest is
    // matched below it without following symlinks, as fsutil's ResolveWildcards does.
    const parts = pattern.split('/');
    const base = resolveSource(root, parts.slice(0, glob).join('/') || '.', filter);
    if (!base || !lstatSync(join(root, base.path)).isDirectory()) continue;
    // Loaded on first use: most builds have no wildcard COPY and start faster without it.
    const { default: fg } = await import('fast-glob');
    const cwd = join(root, base.path);
    const matches = await fg(parts.slice(glob).join('/'), { cwd, dot: true, onlyFiles: false, followSymbolicLinks: false, unique: true });
    for (const m of matches.sort(compareBytes)) {
      const name = base.path === '.' ? m : `${base.path}/${m}`;
      const source = resolveSource(root, name, filter);
      if (source) out.set(source.name, source);
    }
  }
  return [...out.values()];
}

/** Index of the first path component with a wildcard, or -1. */
function firstGlobComponent(pattern: string): number {
  return pattern.split('/').findIndex((c) => GLOB_CHARS.test(c));
}

/** Resolves `name` inside `root` (see Source); undefined when there is nothing there. */
function resolveSource(root: string, name: string, filter: SourceFilter): Source | undefined {
  if (name === '.') return { name, path: '.' };
  const links: string[] = [];
  let parts: string[];
  try {
    parts = resolveComponents(root, name, links);
  } catch (err) {
    if (errno(err) === 'ELOOP' || /too many levels/.test((err as Error).message)) throw new Error(`"${name}": too many levels of symbolic links`);
    throw err;
  }
  const path = parts.length === 0 ? '.' : parts.join('/');
  const excluded = filter.excluded;
  if (excluded && [name, ...links, path].some((p) => p !== '.' && excluded(p))) return undefined;
  if (!lstatSync(join(root, path), { throwIfNoEntry: false })) return undefined;
  return { name, path };
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

/** One entry of a walk: a path and its lstat's numbers (never followed). */
export interface WalkEntry extends FileVersion, StatKeyFields {
  /** Path relative to the walk root, `/`-separated. */
  readonly rel: string;
  readonly abs: string;
  readonly type: EntryType;
  /**
   * The entry's whole lstat, taken when first read: the walk itself reads only the numbers below
   * (a Stats, with its four Dates, costs a large walk more than its system calls). Read it only
   * for what the fields here do not tell.
   */
  readonly stats: Stats;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** The stat fields that tell a changed file (see sameStatKey), as one string. */
  readonly statKey: string;
  /** The fields a copy reads of every file to re-use an earlier copy of it (the entry itself). */
  readonly version: FileVersion;
}

/** What a copy needs of a file's lstat to re-use an earlier copy of it (see solver/file/reuse.ts). */
export type FileVersion = Pick<Stats, 'size' | 'mtimeMs' | 'ctimeMs' | 'nlink'>;

/** The fields of an lstat that tell one version of a file from another. */
export type StatKeyFields = Pick<Stats, 'size' | 'mtimeMs' | 'ctimeMs' | 'ino'>;

/** The fields that tell a changed file (see sameStatKey), as one string (WalkEntry.statKey). */
export function statKeyOf(st: StatKeyFields): string {
  return `${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.ino}`;
}

/**
 * Whether two lstats of one path show the same file version: size, mtime, ctime and inode. The
 * milliseconds are floats with sub-microsecond precision, and any write moves ctime as well.
 */
export function sameStatKey(a: StatKeyFields, b: StatKeyFields): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino;
}

/**
 * How long before a read a file's last change (ctime) leaves its stat key racy. Kernel timestamps
 * come from a coarse clock (a tick of up to 10 ms), and some file systems keep 1 s or 2 s.
 */
const RACY_MS = 2000;

/**
 * Whether a file read at `readAt` (ms since the epoch) changed too shortly before to be told
 * apart from a change right after, within the same timestamp tick: same size, mtime and ctime,
 * other content. As git does with "racily clean" entries, such a stat key is not trusted later.
 */
export function racyStatKey(st: Pick<StatKeyFields, 'ctimeMs'>, readAt: number): boolean {
  return st.ctimeMs > readAt - RACY_MS;
}

// One small object per entry: the numbers a walk reads, the lstat only when asked for.
class Entry implements WalkEntry {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly nlink: number;
  readonly ino: number;
  private lstat: Stats | undefined;

  constructor(
    readonly rel: string,
    readonly abs: string,
    readonly type: EntryType,
    /** The lstat numbers (see lstat-numbers.ts), from index `o`. */
    n: ArrayLike<number>,
    o = 0,
  ) {
    this.mode = n[o + MODE]!;
    this.uid = n[o + UID]!;
    this.gid = n[o + GID]!;
    this.size = n[o + SIZE]!;
    this.mtimeMs = n[o + MTIME_MS]!;
    this.ctimeMs = n[o + CTIME_MS]!;
    this.nlink = n[o + NLINK]!;
    this.ino = n[o + INO]!;
  }

  get stats(): Stats {
    return (this.lstat ??= lstatSync(this.abs));
  }

  get statKey(): string {
    return statKeyOf(this);
  }

  get version(): FileVersion {
    return this;
  }
}

const TYPE_CODES: readonly EntryType[] = ['file', 'dir', 'symlink', 'other'];
const KEPT_FIELDS = INO + 1;

/**
 * The entries of a walk kept for later (a copy of the same selection takes them instead of
 * walking again), in columns: thousands of entry objects kept alive cost the garbage collector
 * more than the second walk they save. Entries are made again, one at a time, when iterated.
 */
export class KeptWalk implements Iterable<WalkEntry> {
  private readonly rels: string[] = [];
  private types = new Uint8Array(256);
  private numbers = new Float64Array(256 * KEPT_FIELDS);
  /** The walk's own path for the root entry (the others are `prefix` + `rel`). */
  private rootAbs: string | undefined;

  constructor(
    /** The walk root with a trailing `/` (see rootPrefix). */
    private readonly prefix: string,
  ) {}

  get length(): number {
    return this.rels.length;
  }

  add(e: WalkEntry): void {
    const i = this.rels.length;
    if (i === this.types.length) {
      const types = new Uint8Array(i * 2);
      types.set(this.types);
      this.types = types;
      const numbers = new Float64Array(i * 2 * KEPT_FIELDS);
      numbers.set(this.numbers);
      this.numbers = numbers;
    }
    if (e.rel === '.') this.rootAbs = e.abs;
    this.rels.push(e.rel);
    this.types[i] = TYPE_CODES.indexOf(e.type);
    const o = i * KEPT_FIELDS;
    const n = this.numbers;
    n[o + MODE] = e.mode;
    n[o + UID] = e.uid;
    n[o + GID] = e.gid;
    n[o + SIZE] = e.size;
    n[o + MTIME_MS] = e.mtimeMs;
    n[o + CTIME_MS] = e.ctimeMs;
    n[o + NLINK] = e.nlink;
    n[o + INO] = e.ino;
  }

  *[Symbol.iterator](): Iterator<WalkEntry> {
    for (let i = 0; i < this.rels.length; i++) {
      const rel = this.rels[i]!;
      const abs = rel === '.' ? this.rootAbs! : this.prefix + rel;
      yield new Entry(rel, abs, TYPE_CODES[this.types[i]!]!, this.numbers, i * KEPT_FIELDS);
    }
  }
}

/** `root` with one trailing `/`: a walk names `root/rel` by concatenation (see StatCache too). */
export function rootPrefix(root: string): string {
  return join(root, '/');
}

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK } = constants;

/**
 * Walks `rel` (file or directory) under `root` depth-first in byte order, skipping excluded
 * paths. Symlinks below `rel` are entries, never followed, so a walk stays under `rel`: callers
 * pass a resolved Source path. Iterative, so a deep tree costs no stack and no chain of nested
 * generators. One lstat and (for a directory) one readdir per entry: this is what a rebuild of
 * an unchanged context costs.
 */
export function* walk(root: string, rel: string, filter: SourceFilter = {}): Generator<WalkEntry> {
  const prefix = rootPrefix(root);
  const { excluded: excludes, settled } = filter;
  const pending = [rel];
  // Beside each pending path: whether it is excluded, when a settled directory above decided it.
  const decided: Array<boolean | undefined> = [undefined];
  while (pending.length > 0) {
    const current = pending.pop()!;
    const inherited = decided.pop();
    const abs = current === '.' ? root : prefix + current;
    // Synchronous: one lstat costs microseconds, a thread-pool round trip per file much more.
    // Float milliseconds, not bigint: they tell a change as well (see sameStatKey).
    const st = lstatNumbers(abs);
    const format = st[MODE]! & S_IFMT;
    const type: EntryType = format === S_IFREG ? 'file' : format === S_IFDIR ? 'dir' : format === S_IFLNK ? 'symlink' : 'other';
    const excluded = current !== '.' && excludes !== undefined && (inherited ?? excludes(current));
    if (!excluded) yield new Entry(current, abs, type, st);
    if (type !== 'dir' || (excluded && !filter.hasExceptions)) continue;
    const below = inherited ?? (current !== '.' && settled?.(current) ? excluded : undefined);
    if (below === true) continue;
    const names = childNames(abs, current, filter);
    const dir = current === '.' ? '' : `${current}/`;
    // Pushed last first, so that they come off the stack in byte order.
    for (let i = names.length - 1; i >= 0; i--) {
      pending.push(dir + names[i]!);
      decided.push(below);
    }
  }
}

/**
 * The names in directory `abs` (`rel` in the walk) in byte order. Node can only name files by
 * UTF-8 strings here, so a name that is not valid UTF-8 cannot be read: it is skipped when
 * excluded, and otherwise reported by name instead of failing later with a misleading ENOENT.
 */
function childNames(abs: string, rel: string, filter: SourceFilter): string[] {
  let names = readdirSync(abs);
  // Invalid UTF-8 decodes to U+FFFD; only then are the raw bytes worth reading.
  if (names.some((n) => n.includes('\uFFFD'))) {
    names = readdirSync(abs, { encoding: 'buffer' }).flatMap((raw) => validName(rel, raw, filter));
  }
  // Most directories hold no name past U+D7FF: then the default (UTF-16) order is byte order.
  return names.some((n) => BEYOND_D7FF.test(n)) ? names.sort(compareBytes) : names.sort();
}

/** `raw` as a string when it is valid UTF-8; nothing when it is not but excluded. */
function validName(parent: string, raw: Buffer, filter: SourceFilter): string[] {
  const name = raw.toString('utf8');
  if (Buffer.from(name, 'utf8').equals(raw)) return [name];
  const rel = parent === '.' ? name : `${parent}/${name}`;
  if (filter.excluded?.(rel) && !filter.hasExceptions) return [];
  const shown = [...raw].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
  throw new Error(`"${parent === '.' ? '' : `${parent}/`}${shown}": file names that are not valid UTF-8 are not supported; exclude it in .dockerignore`);
}

/** Orders names by their UTF-8 bytes, as Go's sort of file names (and so BuildKit's) does. */
export function compareBytes(a: string, b: string): number {
  // Below U+D800, UTF-16 code units sort as code points, and so as UTF-8 bytes: no copies needed.
  if (!BEYOND_D7FF.test(a) && !BEYOND_D7FF.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

const BEYOND_D7FF = /[\uD800-\uFFFF]/;

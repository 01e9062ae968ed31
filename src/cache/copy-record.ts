// The copy record of a COPY step position (see cache-index.ts and solver/copy-history.ts), in
// columns: a context of thousands of files made a JSON record of a megabyte whose parsing, maps
// and stringifying cost an incremental COPY more than its links. Numbers stay in typed arrays,
// written and loaded as they are; paths are one NUL-separated text each way.

import type { Digest } from '../oci/types.js';

/** Numbers kept per file: the source's size, mtimeMs, ctimeMs and inode, then the mode and owner it was copied with. */
const FIELDS = 7;
const SIZE = 0;
const MTIME = 1;
const CTIME = 2;
const INO = 3;
const MODE = 4;
const UID = 5;
const GID = 6;

/** Which version of a source file was copied: the lstat fields that tell a changed file (see sameStatKey). */
export interface CopiedVersion {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
}

/**
 * The regular files a copy wrote, in the order it wrote them: destination path (below the
 * snapshot root), source path, and what the source was. Looked up by destination path; a copy of
 * the same context walks in the same order each time, so a lookup first tries where the last one
 * left off (and a few files beyond), and only a file out of that order builds a map.
 */
export class CopiedFiles {
  private readonly paths: string[];
  private readonly sources: string[];
  private numbers: Float64Array;
  private count: number;
  private byPath: Map<string, number> | undefined;
  private next = 0;

  constructor(columns?: { paths: string[]; sources: string[]; numbers: Float64Array }) {
    this.paths = columns?.paths ?? [];
    this.sources = columns?.sources ?? [];
    this.numbers = columns?.numbers ?? new Float64Array(256 * FIELDS);
    this.count = this.paths.length;
  }

  get size(): number {
    return this.count;
  }

  /** Destination path of file `i`. */
  path(i: number): string {
    return this.paths[i]!;
  }

  /**
   * Adds a file; `racy` marks a source whose stat key cannot be trusted later (see racyStatKey):
   * it is kept with a size no file has, so that it never matches.
   */
  add(path: string, source: string, st: CopiedVersion, mode: number, owner: { uid: number; gid: number }, racy: boolean): void {
    const i = this.count++;
    if ((i + 1) * FIELDS > this.numbers.length) {
      const grown = new Float64Array(this.numbers.length * 2 || 256 * FIELDS);
      grown.set(this.numbers);
      this.numbers = grown;
    }
    this.paths.push(path);
    this.sources.push(source);
    const n = this.numbers;
    const o = i * FIELDS;
    n[o + SIZE] = racy ? -1 : st.size;
    n[o + MTIME] = st.mtimeMs;
    n[o + CTIME] = st.ctimeMs;
    n[o + INO] = st.ino;
    n[o + MODE] = mode;
    n[o + UID] = owner.uid;
    n[o + GID] = owner.gid;
    if (this.byPath) this.byPath.set(path, i);
  }

  /**
   * The position of destination `path`, or -1. `hint`: where the caller's own walk through the
   * files expects it (default: just after the last file found without a hint).
   */
  indexOf(path: string, hint?: number): number {
    let i = hint ?? this.next;
    // A few files skipped (changed, or not asked for) keep the order: looked for just ahead.
    const ahead = Math.min(i + 16, this.count);
    while (i < ahead && this.paths[i] !== path) i++;
    if (i === ahead) {
      if (!this.byPath) {
        this.byPath = new Map();
        // Filled in order: of a path written twice, the last write counts, as in the tree.
        for (let j = 0; j < this.count; j++) this.byPath.set(this.paths[j]!, j);
      }
      i = this.byPath.get(path) ?? -1;
    }
    if (hint === undefined && i >= 0) this.next = i + 1;
    return i;
  }

  /** Whether file `i` came from `source` in the version `st`, and was given `mode` and `owner`. */
  matches(i: number, source: string, st: CopiedVersion, mode: number, owner: { uid: number; gid: number }): boolean {
    const n = this.numbers;
    const o = i * FIELDS;
    return (
      n[o + SIZE] === st.size &&
      n[o + MTIME] === st.mtimeMs &&
      n[o + CTIME] === st.ctimeMs &&
      n[o + INO] === st.ino &&
      n[o + MODE] === mode &&
      n[o + UID] === owner.uid &&
      n[o + GID] === owner.gid &&
      this.sources[i] === source
    );
  }

  /** The columns, trimmed to the files held (for the record file). */
  columns(): { paths: readonly string[]; sources: readonly string[]; numbers: Float64Array } {
    return { paths: this.paths, sources: this.sources, numbers: this.numbers.subarray(0, this.count * FIELDS) };
  }
}

/**
 * The latest result of a COPY step position, for re-using its unchanged files on its next miss
 * (src/solver/file/reuse.ts): valid only for the same `family` (instruction and parent snapshot).
 */
export interface CopyRecord {
  family: Digest;
  /** The committed snapshot holding the result. */
  snapshot: string;
  /** The files the copy wrote. */
  files: CopiedFiles;
  /**
   * The result's own layer, and where the content of each file of `files` lies in it: three
   * numbers per file, at the file's position (header offset, header length, size); -1 for a
   * file without content there.
   */
  layer?: { diffID: Digest; entries: Float64Array };
}

// The file: HEADER (16 bytes), then u32 × 4: file count, bytes of the JSON head, of the
// destination paths, of the source paths; then f64 × 7 per file (see FIELDS), f64 × 3 per file
// when there is a layer (native byte order: a foreign file only misses); then the head (family,
// snapshot, diffID), and the paths, UTF-8, NUL-separated.
const HEADER = Buffer.from('builder copy v1\n');
const TOP = HEADER.length + 16;
const LAYER_FIELDS = 3;

export function encodeCopyRecord(record: CopyRecord): Buffer {
  const { paths, sources, numbers } = record.files.columns();
  const count = paths.length;
  const layer = record.layer;
  if (layer && layer.entries.length !== count * LAYER_FIELDS) throw new Error('copy record: layer entries do not match the files');
  const head = Buffer.from(JSON.stringify({ family: record.family, snapshot: record.snapshot, ...(layer && { diffID: layer.diffID }) }));
  const pathBytes = Buffer.from(paths.join('\0'));
  const sourceBytes = Buffer.from(sources.join('\0'));
  const top = Buffer.alloc(TOP);
  HEADER.copy(top);
  top.writeUInt32LE(count, HEADER.length);
  top.writeUInt32LE(head.length, HEADER.length + 4);
  top.writeUInt32LE(pathBytes.length, HEADER.length + 8);
  top.writeUInt32LE(sourceBytes.length, HEADER.length + 12);
  const parts: Uint8Array[] = [top, bytesOf(numbers)];
  if (layer) parts.push(bytesOf(layer.entries));
  parts.push(head, pathBytes, sourceBytes);
  return Buffer.concat(parts);
}

/** Reads what encodeCopyRecord wrote; undefined for anything else (an older format, a damaged file). */
export function decodeCopyRecord(file: Buffer): CopyRecord | undefined {
  if (file.length < TOP || !file.subarray(0, HEADER.length).equals(HEADER)) return undefined;
  const count = file.readUInt32LE(HEADER.length);
  const headBytes = file.readUInt32LE(HEADER.length + 4);
  const pathBytes = file.readUInt32LE(HEADER.length + 8);
  const sourceBytes = file.readUInt32LE(HEADER.length + 12);
  const fixed = TOP + count * FIELDS * 8 + headBytes + pathBytes + sourceBytes;
  const withLayer = fixed + count * LAYER_FIELDS * 8;
  if (file.length !== fixed && file.length !== withLayer) return undefined;
  // Typed arrays need aligned offsets: a copy starts at offset 0 of its own memory.
  const data = file.byteOffset % 8 === 0 ? file : Buffer.from(new Uint8Array(file));
  let at = TOP;
  const numbers = new Float64Array(data.buffer, data.byteOffset + at, count * FIELDS);
  at += count * FIELDS * 8;
  let entries: Float64Array | undefined;
  if (file.length === withLayer) {
    entries = new Float64Array(data.buffer, data.byteOffset + at, count * LAYER_FIELDS);
    at += count * LAYER_FIELDS * 8;
  }
  let head: { family?: unknown; snapshot?: unknown; diffID?: unknown };
  try {
    head = JSON.parse(data.toString('utf8', at, (at += headBytes))) as typeof head;
  } catch {
    return undefined;
  }
  const paths = texts(data, at, pathBytes, count);
  const sources = texts(data, at + pathBytes, sourceBytes, count);
  if (typeof head.family !== 'string' || typeof head.snapshot !== 'string' || !paths || !sources) return undefined;
  if (entries && typeof head.diffID !== 'string') return undefined;
  return {
    family: head.family as Digest,
    snapshot: head.snapshot,
    files: new CopiedFiles({ paths, sources, numbers }),
    ...(entries && { layer: { diffID: head.diffID as Digest, entries } }),
  };
}

/** `count` NUL-separated texts in `length` bytes at `at`; undefined when there are not that many. */
function texts(data: Buffer, at: number, length: number, count: number): string[] | undefined {
  if (count === 0) return length === 0 ? [] : undefined;
  const list = data.toString('utf8', at, at + length).split('\0');
  return list.length === count ? list : undefined;
}

function bytesOf(a: Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

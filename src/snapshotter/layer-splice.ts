// Re-packing a layer from an earlier one: when a step re-used files of an earlier result (an
// incremental COPY links them), their bytes in the new layer are the bytes the earlier layer
// holds for the same paths. The tar is deterministic and sorted, so those contents are read from
// the earlier blob in large sequential reads instead of through one open and read per file.
//
// Only content is taken over: every header is packed anew, and content is copied only where the
// earlier blob holds the very same header bytes at the place its index names. An index or blob
// that is missing, stale or corrupt therefore costs speed (those files are read as usual), never
// a different layer.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { ContentStore } from '../cache/content-store.js';
import type { Digest } from '../oci/types.js';
import type { ContentReader } from './tar-writer.js';
import type { EntryStat } from './fsutil.js';

/** Where a regular file's bytes lie in a layer tar: its header's offset, the header's length (PAX included) and the content's size. */
export type IndexedEntry = readonly [headerOffset: number, headerLength: number, size: number];

/** A layer's regular files with content, by path as in the tar (no leading slash). */
export type LayerIndex = ReadonlyMap<string, IndexedEntry>;

/** Where an earlier layer's files lie, looked up by path (see LayerIndex). */
export type EarlierIndex = Pick<LayerIndex, 'get'>;

export interface EarlierLayer {
  /** The earlier layer's blob in the content store (uncompressed). */
  digest: Digest;
  index: EarlierIndex;
  /**
   * Paths whose content is known to be that of the earlier layer's entry of the same path, each
   * with an lstat of its file: overlayfs diffs take these instead of a stat and xattr read of
   * their own, and pack such a file from them only when the earlier layer holds exactly the
   * header they give (see writeLayer).
   */
  same: ReadonlyMap<string, EntryStat>;
}

const WINDOW = 1024 * 1024;

/** Reads contents out of an earlier layer blob for entries that qualify (see contentOf). */
export class EarlierLayerReader {
  private readonly window = Buffer.allocUnsafe(WINDOW);
  private windowStart = 0;
  private windowLength = 0;

  private constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly earlier: EarlierLayer,
  ) {}

  /** Opens the earlier blob; undefined when it is not in the store (pruned, or never fetched). */
  static open(store: ContentStore, earlier: EarlierLayer): EarlierLayerReader | undefined {
    let fd: number;
    try {
      fd = openSync(store.path(earlier.digest), 'r');
    } catch {
      return undefined;
    }
    return new EarlierLayerReader(fd, fstatSync(fd).size, earlier);
  }

  /**
   * A reader of `name`'s content from the earlier blob, when `name` is one of the paths known
   * unchanged and the blob holds exactly `header` at the indexed place, followed by `size` bytes.
   */
  contentOf(name: string, header: Buffer, size: number): ContentReader | undefined {
    if (!this.earlier.same.has(name)) return undefined;
    const entry = this.earlier.index.get(name);
    if (!Array.isArray(entry)) return undefined;
    const [at, headerLength, indexedSize] = entry;
    if (indexedSize !== size || headerLength !== header.length || !Number.isSafeInteger(at) || at < 0) return undefined;
    const contentStart = at + headerLength;
    if (contentStart + size > this.size || !this.holds(at, header)) return undefined;
    return (into, offset, length, from) => this.read(into, offset, Math.min(length, size - from), contentStart + from);
  }

  close(): void {
    closeSync(this.fd);
  }

  private holds(at: number, bytes: Buffer): boolean {
    // Compared in the window where it lies there (entries come in the blob's order): no copy.
    if (bytes.length < WINDOW && this.inWindow(at, bytes.length)) {
      const from = at - this.windowStart;
      return this.window.compare(bytes, 0, bytes.length, from, from + bytes.length) === 0;
    }
    const got = Buffer.allocUnsafe(bytes.length);
    return this.read(got, 0, bytes.length, at) === bytes.length && got.equals(bytes);
  }

  /** Whether `length` bytes at `position` can be read from the window, filling it from there if need be. */
  private inWindow(position: number, length: number): boolean {
    if (position < this.windowStart || position + length > this.windowStart + this.windowLength) {
      this.windowStart = position;
      this.windowLength = readFully(this.fd, this.window, 0, Math.min(WINDOW, this.size - position), position);
    }
    return position + length <= this.windowStart + this.windowLength;
  }

  /** Reads through a window of the blob (entries come in the blob's order); large reads go straight through. */
  private read(into: Buffer, offset: number, length: number, position: number): number {
    if (length <= 0) return 0;
    if (length >= WINDOW) return readFully(this.fd, into, offset, length, position);
    this.inWindow(position, length);
    const from = position - this.windowStart;
    return this.window.copy(into, offset, from, Math.min(from + length, this.windowLength));
  }
}

function readFully(fd: number, into: Buffer, offset: number, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, into, offset + done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

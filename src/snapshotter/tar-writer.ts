// A small deterministic tar writer (ustar headers + PAX extended headers).
//
// Written here rather than with tar-stream's pack so that every byte is under our control
// (layer digests must be reproducible) and PAX records can carry binary xattr values such as
// security.capability, which tar-stream would mangle through UTF-8 strings.

import { closeSync, openSync, readSync } from 'node:fs';
import { TAR_BLOCK_SIZE } from '../oci/layer.js';

export type TarEntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarEntry {
  /** Relative path without a leading slash; directories without a trailing slash. */
  name: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Content size (regular files only). */
  size: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Sorted by name. */
  xattrs?: ReadonlyArray<readonly [string, Buffer]>;
  /** File whose content is streamed for a regular file. */
  source?: string;
}

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

const TYPEFLAG: Record<TarEntryType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

const MAX_OCTAL_8 = 0o7777777;
const MAX_OCTAL_12 = 0o77777777777;

/**
 * Reads up to `length` bytes of an entry's content, from byte `at` of the content on, into
 * `into` at `offset`; returns how many it read (0: the content ends there).
 */
export type ContentReader = (into: Buffer, offset: number, length: number, at: number) => number;

export class FileChangedError extends Error {
  constructor(readonly path: string, expected: number, actual: number) {
    super(`${path} changed while it was being archived (expected ${expected} bytes, read ${actual})`);
    this.name = 'FileChangedError';
  }
}

/**
 * Serialises tar entries into blocks of `blockSize` bytes (the last one shorter), handed to
 * `emit` as they fill; the receiver owns each block. Synchronous, and file contents are read
 * straight into the block: a layer of many small files costs a few syscalls per file, not a
 * trip through a stream per header, payload and padding.
 */
export class TarPacker {
  private block: Buffer;
  private used = 0;
  private emitted = 0;
  /** Emitted blocks handed back (recycle): a fresh 1 MiB buffer costs page faults on first touch. */
  private readonly spare: Buffer[] = [];

  constructor(
    private readonly emit: (block: Buffer) => void,
    private readonly blockSize = TAR_BLOCK_SIZE,
  ) {
    this.block = Buffer.allocUnsafe(blockSize);
  }

  /** Bytes packed so far: where the next entry starts in the archive. */
  get offset(): number {
    return this.emitted + this.used;
  }

  /**
   * Packs `e`. A regular file's bytes come from `e.source`, unless `content`, shown the entry's
   * header bytes (PAX and ustar), returns a reader of the same bytes from elsewhere.
   */
  add(e: TarEntry, content?: (header: Buffer) => ContentReader | undefined): void {
    const head = entryHeader(e);
    this.addWithHeader(e, head, e.type === 'file' && e.size > 0 ? content?.(head) : undefined);
  }

  /**
   * Packs `e` whose header bytes the caller made already (`head`, see entryHeader). A regular
   * file's bytes come from `content` when given, else from `e.source`.
   */
  addWithHeader(e: TarEntry, head: Buffer, content?: ContentReader): void {
    const size = e.type === 'file' ? e.size : 0;
    this.put(head);
    if (size === 0) return;
    if (content) this.putContent(content, e.name, size);
    else if (e.source === undefined) throw new Error(`tar entry ${e.name} has no content source`);
    else this.putFile(e.source, size);
    this.pad(size);
  }

  /** Takes back an emitted block its receiver is done with, to fill again. */
  recycle(block: Buffer): void {
    if (block.length === this.blockSize && this.spare.length < 8) this.spare.push(block);
  }

  /** Ends the archive (two zero blocks) and emits what is left. */
  finish(): void {
    this.put(Buffer.alloc(BLOCK * 2));
    if (this.used > 0) this.emit(this.block.subarray(0, this.used));
    this.emitted += this.used;
    this.used = 0;
  }

  private put(data: Buffer): void {
    let off = 0;
    while (off < data.length) {
      const n = data.copy(this.block, this.used, off);
      off += n;
      this.advance(n);
    }
  }

  private pad(size: number): void {
    if (size % BLOCK !== 0) this.put(ZERO_BLOCK.subarray(0, padding(size)));
  }

  /**
   * The header already promised `size` bytes, so a file that changed size is an error. The last
   * read asks for one byte more where the block has room, which tells the end of the file
   * without another read (the extra byte is not kept).
   */
  private putFile(path: string, size: number): void {
    const fd = openSync(path, 'r');
    try {
      let read = 0;
      let ended = false;
      while (read < size) {
        const room = this.blockSize - this.used;
        const want = Math.min(room, size - read + 1);
        const n = readSync(fd, this.block, this.used, want, null);
        if (n === 0) throw new FileChangedError(path, size, read);
        if (read + n > size) throw new FileChangedError(path, size, read + n);
        ended = n < want;
        read += n;
        this.advance(n);
      }
      if (!ended && readSync(fd, Buffer.allocUnsafe(1), 0, 1, null) !== 0) throw new FileChangedError(path, size, read + 1);
    } finally {
      closeSync(fd);
    }
  }

  private putContent(read: ContentReader, name: string, size: number): void {
    for (let done = 0; done < size; ) {
      const n = read(this.block, this.used, Math.min(this.blockSize - this.used, size - done), done);
      if (n === 0) throw new FileChangedError(name, size, done);
      done += n;
      this.advance(n);
    }
  }

  private advance(n: number): void {
    this.used += n;
    if (this.used < this.blockSize) return;
    this.emit(this.block);
    this.emitted += this.blockSize;
    this.block = this.spare.pop() ?? Buffer.allocUnsafe(this.blockSize);
    this.used = 0;
  }
}

/**
 * The header bytes of entry `e` (a PAX extended header where ustar cannot hold a value, then the
 * ustar header): what precedes its content in the archive.
 */
export function entryHeader(e: TarEntry): Buffer {
  const name = e.type === 'dir' ? `${e.name}/` : e.name;
  const size = e.type === 'file' ? e.size : 0;
  const pax: Array<[string, Buffer]> = [];
  if (!fitsUstarString(name, 100)) pax.push(['path', Buffer.from(name)]);
  if (e.linkname !== undefined && !fitsUstarString(e.linkname, 100)) pax.push(['linkpath', Buffer.from(e.linkname)]);
  if (e.uid > MAX_OCTAL_8) pax.push(['uid', Buffer.from(String(e.uid))]);
  if (e.gid > MAX_OCTAL_8) pax.push(['gid', Buffer.from(String(e.gid))]);
  if (size > MAX_OCTAL_12) pax.push(['size', Buffer.from(String(size))]);
  for (const [k, v] of e.xattrs ?? []) pax.push([`SCHILY.xattr.${k}`, v]);

  const ustar = header({
    name: fitsUstarString(name, 100) ? name : asciiPlaceholder(name, 100),
    typeflag: TYPEFLAG[e.type],
    mode: e.mode & 0o7777,
    uid: Math.min(e.uid, MAX_OCTAL_8),
    gid: Math.min(e.gid, MAX_OCTAL_8),
    size: Math.min(size, MAX_OCTAL_12),
    mtime: e.mtime,
    linkname: e.linkname === undefined ? '' : fitsUstarString(e.linkname, 100) ? e.linkname : asciiPlaceholder(e.linkname, 100),
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
  });
  if (pax.length === 0) return ustar;
  const records = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const paxHeader = header({ name: paxHeaderName(name), typeflag: 'x', mode: 0o644, uid: 0, gid: 0, size: records.length, mtime: e.mtime });
  return Buffer.concat([paxHeader, records, ZERO_BLOCK.subarray(0, padding(records.length)), ustar]);
}

/** The zeros that fill `size` bytes of content up to a whole tar block. */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** A whole tar archive in memory (small archives: tests, fixtures). */
export function packTar(entries: Iterable<TarEntry>): Buffer {
  const blocks: Buffer[] = [];
  const packer = new TarPacker((b) => blocks.push(b));
  for (const e of entries) packer.add(e);
  packer.finish();
  return Buffer.concat(blocks);
}

interface RawHeader {
  name: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
}

function header(h: RawHeader): Buffer {
  // From Node's shared pool (a slice of a larger buffer), zeroed by hand: Buffer.alloc makes a
  // new ArrayBuffer for every header, thousands per layer, each one more for the GC to sweep.
  const buf = Buffer.allocUnsafe(BLOCK).fill(0);
  buf.write(h.name, 0, 100, 'utf8');
  writeOctal(buf, 100, 8, h.mode);
  writeOctal(buf, 108, 8, h.uid);
  writeOctal(buf, 116, 8, h.gid);
  writeOctal(buf, 124, 12, h.size);
  writeOctal(buf, 136, 12, Math.max(0, Math.min(Math.floor(h.mtime), MAX_OCTAL_12)));
  buf.write(h.typeflag, 156, 1, 'ascii');
  if (h.linkname) buf.write(h.linkname, 157, 100, 'utf8');
  buf.write('ustar\0', 257, 6, 'ascii');
  buf.write('00', 263, 2, 'ascii');
  // uname (265) and gname (297) stay empty: ids are numeric only.
  writeOctal(buf, 329, 8, h.devmajor ?? 0);
  writeOctal(buf, 337, 8, h.devminor ?? 0);
  buf.fill(0x20, 148, 156); // the checksum is computed with its own field as spaces
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += buf[i]!;
  buf.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return buf;
}

function writeOctal(buf: Buffer, offset: number, width: number, value: number): void {
  // Digit by digit where the value fits (every header field of a layer): no string per field.
  if (Number.isSafeInteger(value) && value >= 0 && value < 8 ** (width - 1)) {
    let rest = value;
    for (let i = offset + width - 2; i >= offset; i--) {
      buf[i] = 0x30 + (rest % 8);
      rest = Math.floor(rest / 8);
    }
    buf[offset + width - 1] = 0;
    return;
  }
  buf.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, width, 'ascii');
}

/** PAX records are "<len> <key>=<value>\n" where <len> counts the whole record, itself included. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(key) + value.length + 3; // ' ', '=', '\n'
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')]);
}

/** Like Go's archive/tar: "<dir>/PaxHeaders.0/<base>", cut to fit. */
function paxHeaderName(name: string): string {
  const trimmed = name.endsWith('/') ? name.slice(0, -1) : name;
  const i = trimmed.lastIndexOf('/');
  const dir = i < 0 ? '' : trimmed.slice(0, i + 1);
  return asciiPlaceholder(`${dir}PaxHeaders.0/${trimmed.slice(i + 1)}`, 100);
}

function fitsUstarString(s: string, max: number): boolean {
  // eslint-disable-next-line no-control-regex
  return s.length <= max && /^[\x01-\x7f]*$/.test(s);
}

/** The ustar field for a value carried in PAX: printable ASCII, cut to the field size. */
function asciiPlaceholder(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, max);
}

// Reading a layer blob: its compression told by its bytes, its diffID hashed on the way, and its
// tar entries with their xattrs. The snapshotter's one place that knows tar-stream.
//
// tar-stream decodes PAX records as UTF-8 text, which destroys binary xattr values such as
// security.capability, and offers no option to keep the bytes. keepBinaryXattrs therefore wraps
// one internal method of its extractor (`_decodeLongHeader`, tar-stream 3) to also keep each
// SCHILY.xattr.* value as raw bytes. Wrapping it ties the raw values to exactly the header
// tar-stream itself applies them to; a parser of our own running beside it could fall out of
// step and give one entry's xattrs to another. Should the method ever disappear, entries keep
// their text values and binary ones are skipped with a warning (test/snapshotter/corpus.test.ts
// fails then: it checks a security.capability value byte for byte).

import { Readable, type Duplex, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar, { type Header } from 'tar-stream';
import { DigestCounter } from '../cache/content-store.js';
import type { Digest } from '../oci/types.js';
import { commandFilter } from '../util/command.js';

/** A parsed header; tar-stream puts the entry's PAX records (strings) in `pax`. */
export type EntryHeader = Header;

/** An entry's content stream (tar-stream's streamx Readable). */
export type EntryBody = AsyncIterable<unknown>;

export interface LayerEntries {
  /** The tar entries in order; each is its body, with its header in `header`. */
  entries: AsyncIterable<EntryBody & { header: EntryHeader }>;
  /** Settles once the whole blob is read; rejects on a read, decompression or tar error. */
  done: Promise<void>;
  /** sha256 of the uncompressed tar, once `done` has settled. */
  diffID(): Digest;
  /** Stops reading (after a failure): every stage is destroyed. */
  destroy(): void;
}

/** Opens a layer blob (tar, gzip or zstd; detected from its content) as a stream of tar entries. */
export async function readLayerEntries(layer: Readable | NodeJS.ReadableStream, mediaType: string): Promise<LayerEntries> {
  const { head, stream } = await peekHead(layer, 4);
  const decompressor = decompressorFor(head, mediaType);
  const counter = new DigestCounter();
  const extract = tar.extract();
  keepBinaryXattrs(extract);
  const stages: Array<Readable | Transform | Duplex> = [stream, ...(decompressor ? [decompressor] : []), counter];
  // tar-stream's extractor is a streamx Writable: pipeline-compatible, but not typed as a Node stream.
  const done = pipeline([...stages, extract] as unknown as [Readable, NodeJS.WritableStream]);
  done.catch(() => undefined); // observed by the caller; avoid an unhandled rejection meanwhile
  return {
    entries: extract,
    done,
    diffID: () => counter.digest(),
    destroy: () => {
      for (const s of stages) s.destroy();
      extract.destroy();
      if ('destroy' in layer && typeof layer.destroy === 'function') layer.destroy();
    },
  };
}

/**
 * What applying needs of a tar entry's header, as plain data that a worker thread can be sent:
 * its xattrs already decoded from the PAX records, its mtime in seconds.
 */
export interface LayerEntry {
  name: string;
  type: EntryHeader['type'];
  mode: number | undefined;
  uid: number | undefined;
  gid: number | undefined;
  /** Seconds since the epoch (0 when the header has none). */
  mtime: number;
  linkname: string | undefined;
  devmajor: number | undefined;
  devminor: number | undefined;
  xattrs: Array<[string, Uint8Array]>;
}

/** The header as a LayerEntry; xattrs that cannot be kept are reported to `warn`. */
export function layerEntryOf(h: EntryHeader, warn: (message: string) => void): LayerEntry {
  return {
    name: h.name,
    type: h.type,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    mtime: h.mtime ? h.mtime.getTime() / 1000 : 0,
    linkname: h.linkname ?? undefined,
    devmajor: h.devmajor,
    devminor: h.devminor,
    xattrs: h.pax ? [...entryXattrs(h, warn)] : [],
  };
}

/**
 * An entry's xattrs from its PAX records: SCHILY.xattr.* (raw bytes via keepBinaryXattrs) and
 * LIBARCHIVE.xattr.* (base64, binary-safe: it wins over a SCHILY copy). A binary value that only
 * survived as text is skipped with a warning.
 */
export function entryXattrs(h: EntryHeader, warn: (message: string) => void): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const pax = (h.pax ?? {}) as Record<string, string> & { [RAW_XATTRS]?: Map<string, Buffer> };
  const raw = pax[RAW_XATTRS];
  for (const [k, v] of Object.entries(pax)) {
    if (k.startsWith('LIBARCHIVE.xattr.')) {
      out.set(decodeURIComponent(k.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(v, 'base64'));
    } else if (k.startsWith('SCHILY.xattr.')) {
      const name = k.slice('SCHILY.xattr.'.length);
      if (out.has(name)) continue;
      const bytes = raw?.get(name);
      if (bytes) {
        out.set(name, bytes);
      } else if (v.includes('\uFFFD')) {
        warn(`skipped xattr ${name} of ${h.name}: binary value not representable`);
      } else {
        out.set(name, Buffer.from(v, 'utf8'));
      }
    }
  }
  return out;
}

/** Where keepBinaryXattrs leaves an entry's xattrs (raw bytes) inside tar-stream's `pax` object. */
const RAW_XATTRS = Symbol('rawXattrs');

/**
 * Wraps the extractor's PAX decoding to keep each SCHILY.xattr.* value as raw bytes too (see
 * the top of this file for why).
 */
function keepBinaryXattrs(extract: object): void {
  type Internals = {
    _decodeLongHeader?: (buf: Buffer) => void;
    _header?: { type?: string } | null;
    _pax?: Record<string | symbol, unknown> | null;
  };
  const ex = extract as Internals;
  const original = ex._decodeLongHeader;
  if (typeof original !== 'function') return;
  ex._decodeLongHeader = function (this: Internals, buf: Buffer): void {
    original.call(this, buf);
    if (this._header?.type === 'pax-header' && this._pax) this._pax[RAW_XATTRS] = rawPaxXattrs(buf);
  };
}

/** SCHILY.xattr.* records of a PAX header block ("<len> <key>=<value>\n"), values as bytes. */
function rawPaxXattrs(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length) {
    const space = buf.indexOf(0x20, pos);
    if (space < 0) break;
    const len = parseInt(buf.toString('ascii', pos, space), 10);
    if (!(len > 0) || pos + len > buf.length) break;
    const record = buf.subarray(space + 1, pos + len - 1); // without the trailing newline
    const eq = record.indexOf(0x3d);
    if (eq > 0) {
      const key = record.toString('utf8', 0, eq);
      if (key.startsWith('SCHILY.xattr.')) out.set(key.slice('SCHILY.xattr.'.length), Buffer.from(record.subarray(eq + 1)));
    }
    pos += len;
  }
  return out;
}

/**
 * A layer blob's uncompressed tar stream and its compression (told by its bytes): what loading an
 * archive and `import` need to know a layer's diffID and media type.
 */
export async function uncompressedLayer(layer: Readable | NodeJS.ReadableStream, mediaType: string): Promise<{ tar: Readable; compression?: 'gzip' | 'zstd' }> {
  const { head, stream } = await peekHead(layer, 4);
  const decompressor = decompressorFor(head, mediaType);
  if (!decompressor) return { tar: stream };
  stream.once('error', (err) => decompressor.destroy(err));
  return { tar: stream.pipe(decompressor) as Readable, compression: layerCompression(head) };
}

/** The compression a layer's first bytes show: gzip, zstd, or none. */
export function layerCompression(head: Buffer): 'gzip' | 'zstd' | undefined {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return undefined;
}

/**
 * Reads the first `n` bytes without losing them: returns them and a stream of the whole input.
 * The bytes are read in flowing mode and put back with `unshift`, so the rest of the input
 * reaches the decompressor straight from the source, chunk by chunk as it came.
 */
async function peekHead(src: Readable | NodeJS.ReadableStream, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const stream = src instanceof Readable ? src : new Readable().wrap(src);
  const chunks: Buffer[] = [];
  let size = 0;
  return new Promise((resolve, reject) => {
    if (stream.destroyed) return reject(stream.errored ?? new Error('layer stream closed before its end'));
    const stop = (): void => void stream.off('data', onData).off('end', onEnd).off('error', reject).off('close', onClose);
    const onData = (chunk: Buffer | string): void => {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      size += chunks.at(-1)!.length;
      if (size < n) return;
      stop();
      stream.pause();
      // Put back at once: the source must not see an empty buffer and end meanwhile.
      const head = Buffer.concat(chunks);
      stream.unshift(head);
      resolve({ head: head.subarray(0, n), stream });
    };
    // An input shorter than `n` has ended: it cannot take its bytes back.
    const onEnd = (): void => {
      stop();
      const head = Buffer.concat(chunks);
      resolve({ head, stream: Readable.from(head.length > 0 ? [head] : []) });
    };
    const onClose = (): void => reject(stream.errored ?? new Error('layer stream closed before its end'));
    stream.on('data', onData).once('end', onEnd).once('error', reject).once('close', onClose);
  });
}

/** Size of the chunks gunzip puts out. */
const GUNZIP_CHUNK = 128 * 1024;

/** The compression is told by the bytes (as containerd does); the media type only names it. */
function decompressorFor(head: Buffer, mediaType: string): Transform | Duplex | undefined {
  const compression = layerCompression(head);
  // Each output chunk is a round trip to zlib's worker thread and a chunk for the tar parser:
  // zlib's default (16 KiB) made that per-chunk cost a large share of an unpack.
  if (compression === 'gzip') return createGunzip({ chunkSize: GUNZIP_CHUNK });
  if (compression === 'zstd') return zstdDecompressor();
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) throw new Error(`unsupported layer compression (bzip2) for ${mediaType}`);
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a) throw new Error(`unsupported layer compression (xz) for ${mediaType}`);
  return undefined;
}

/** Node 20 has no zstd: use the `zstd` command (install it where zstd layers are expected). */
function zstdDecompressor(): Duplex {
  return commandFilter('zstd', ['-d', '-c', '-q'], { missing: 'zstd layers need the zstd command', label: 'zstd -d' });
}

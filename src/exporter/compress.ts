// Layers leave the machine compressed. Builds store their layers as plain tars (like BuildKit,
// which compresses lazily); pushing or exporting an image compresses each such layer once per
// algorithm, remembers the result, and rewrites the manifest. The config is unchanged: its
// diff_ids name the uncompressed tars either way.
//
// gzip uses every core: the tar is cut into 1 MiB blocks, each compressed on libuv's thread
// pool as an independent gzip member, and the members are written in order (RFC 1952 allows
// any number of members; every gzip reader, Go's included, reads them as one stream). Unlike
// pigz, the bytes depend neither on the number of cores nor on which tools are installed, so
// layer digests stay reproducible from machine to machine. A layer under 1 MiB is one member,
// byte for byte what a plain gzip stream of it would be.

import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { DigestCounter, type ContentStore } from '../cache/content-store.js';
import { canonicalJson } from '../oci/digest.js';
import { TAR_BLOCK_SIZE } from '../oci/layer.js';
import { MediaType, type Descriptor, type Digest, type ImageManifest } from '../oci/types.js';
import { commandFilter } from '../util/command.js';
import type { BuiltImage } from './image.js';

export type LayerCompression = 'gzip' | 'zstd' | 'uncompressed';

const COMPRESSED_TYPES: Record<Exclude<LayerCompression, 'uncompressed'>, string> = {
  gzip: MediaType.OciLayerGzip,
  zstd: MediaType.OciLayerZstd,
};

const UNCOMPRESSED_TYPES = new Set<string>([MediaType.OciLayer, MediaType.DockerLayer]);

/**
 * The image as it is pushed or exported with `compression`: uncompressed layers replaced by
 * compressed blobs (made once, then found again in `stateRoot`), and a manifest that names them.
 * Layers that arrived compressed (from a base image) are left as they are.
 */
export async function distributable(store: ContentStore, stateRoot: string, image: BuiltImage, compression: LayerCompression = 'gzip'): Promise<BuiltImage> {
  if (!(compression in COMPRESSED_TYPES) && compression !== 'uncompressed') {
    throw new Error(`unknown layer compression ${JSON.stringify(compression)}: use gzip, zstd or uncompressed`);
  }
  if (compression === 'uncompressed' || !image.manifest.layers.some((l) => UNCOMPRESSED_TYPES.has(l.mediaType))) return image;
  const layers = await compressedLayers(store, stateRoot, image.manifest.layers, compression);
  const manifest: ImageManifest = { ...image.manifest, layers };
  const blob = await store.putBytes(canonicalJson(manifest));
  return { ...image, manifest, manifestDescriptor: { ...image.manifestDescriptor, ...blob } };
}

/** `layers` as they leave the machine: each uncompressed one replaced by its compressed copy (made once). */
export async function compressedLayers(store: ContentStore, stateRoot: string, layers: readonly Descriptor[], compression: Exclude<LayerCompression, 'uncompressed'>): Promise<Descriptor[]> {
  const variants = new CompressedVariants(store, stateRoot, compression);
  const out: Descriptor[] = [];
  for (const layer of layers) out.push(UNCOMPRESSED_TYPES.has(layer.mediaType) ? await variants.of(layer) : layer);
  return out;
}

/** Compressed copies of uncompressed blobs, one file per blob and algorithm naming the copy's digest. */
class CompressedVariants {
  private readonly dir: string;

  constructor(
    private readonly store: ContentStore,
    stateRoot: string,
    private readonly compression: Exclude<LayerCompression, 'uncompressed'>,
  ) {
    this.dir = join(stateRoot, 'compressed', compression);
  }

  async of(layer: Descriptor): Promise<Descriptor> {
    const mediaType = COMPRESSED_TYPES[this.compression];
    const record = join(this.dir, layer.digest.slice('sha256:'.length));
    const known = await readFile(record, 'utf8').catch(() => undefined);
    if (known && /^sha256:[0-9a-f]{64}$/.test(known) && (await this.store.has(known as Digest))) {
      return { mediaType, digest: known as Digest, size: await this.store.size(known as Digest) };
    }
    const { digest, size } = await compressBlob(this.store, layer.digest, this.compression);
    await mkdir(this.dir, { recursive: true });
    const tmp = `${record}.${randomBytes(6).toString('hex')}`;
    await writeFile(tmp, digest);
    await rename(tmp, record);
    return { mediaType, digest, size };
  }
}

/** Compresses a stored blob into a new stored blob, hashing it as it is written. */
export async function compressBlob(store: ContentStore, digest: Digest, compression: 'gzip' | 'zstd'): Promise<{ digest: Digest; size: number }> {
  const writer = await store.createWriter();
  const counter = new DigestCounter();
  try {
    const source = createReadStream(store.path(digest), { highWaterMark: TAR_BLOCK_SIZE });
    const compressor = compression === 'gzip' ? parallelGzip : zstdCompressor();
    await pipeline(source, compressor, counter, createWriteStream(writer.path));
  } catch (err) {
    await writer.abort();
    throw err;
  }
  const result = { digest: counter.digest(), size: counter.size };
  await writer.commit(result.digest);
  return result;
}

/**
 * A pipeline stage: gzip as independent members of `blockSize` input bytes each, compressed
 * concurrently on the thread pool (one more block in flight than there are cores, so a core
 * never waits for the reader), emitted in input order.
 */
export async function* parallelGzip(source: AsyncIterable<Buffer>, opts: { blockSize?: number; inFlight?: number } = {}): AsyncGenerator<Buffer> {
  const blockSize = opts.blockSize ?? TAR_BLOCK_SIZE;
  const inFlight = opts.inFlight ?? availableParallelism() + 1;
  const pending: Array<Promise<Buffer>> = [];
  let parts: Buffer[] = [];
  let size = 0;
  let members = 0;
  const start = (): void => {
    const block = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
    const p = gzipAsync(block);
    p.catch(() => undefined); // awaited in order below
    pending.push(p);
    parts = [];
    size = 0;
    members++;
  };
  try {
    for await (const chunk of source) {
      let buf = chunk;
      while (buf.length > 0) {
        const take = Math.min(blockSize - size, buf.length);
        parts.push(take === buf.length ? buf : buf.subarray(0, take));
        size += take;
        buf = buf.subarray(take);
        if (size === blockSize) {
          start();
          while (pending.length >= inFlight) yield await pending.shift()!;
        }
      }
    }
    if (size > 0 || members === 0) start();
    while (pending.length > 0) yield await pending.shift()!;
  } finally {
    pending.length = 0;
  }
}

/** zlib's gzip as a promise, made at the first call: the CLI bundle loads zlib only when it is used. */
let gzipPromise: ((buf: Buffer) => Promise<Buffer>) | undefined;
const gzipAsync = (buf: Buffer): Promise<Buffer> => (gzipPromise ??= promisify(gzip) as (buf: Buffer) => Promise<Buffer>)(buf);

/** zstd through the `zstd` command (Node 20 has none); multi-threaded output is deterministic. */
function zstdCompressor(): Duplex {
  return commandFilter('zstd', ['-3', '-T2', '-c', '-q'], { missing: 'zstd compression needs the zstd command' });
}

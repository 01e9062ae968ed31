// Pushing: blobs (skipped when present, mounted from another repository when one holds them,
// else uploaded whole or in resumable PATCH chunks) and manifests.

import { Readable } from 'node:stream';
import { sha256, isSha256Digest } from '../oci/digest.js';
import type { Descriptor, Digest } from '../oci/types.js';
import { pullScope, pushScope } from './auth.js';
import { headBlob } from './blob-reader.js';
import { apiUrl, type Endpoint } from './endpoints.js';
import { ContentVerificationError, RegistryError } from './errors.js';
import type { HttpResponse } from './http.js';
import { assertDigest } from './manifest.js';
import type { ImageReference } from './reference.js';
import { errorFrom, headerValue, type Requester } from './request.js';
import { isNetworkError, retrying } from './retry.js';

const MAX_UPLOAD_RESUMES = 5;

export interface PushBlobOptions {
  /** A repository on the same registry that already holds the blob: ask for a cross-repo mount first. */
  mountFrom?: string;
}

/** Blobs larger than `threshold` are uploaded in PATCH chunks of `size` bytes. */
export interface Chunking {
  threshold: number;
  size: number;
}

/**
 * Uploads a blob unless the repository already has it: optionally a cross-repo mount, else
 * POST an upload session and PUT the whole stream, or for blobs over the chunked-upload
 * threshold PATCH it in chunks, following the Location and Range each answer carries (`open`
 * is called again for each attempt and must return a fresh stream of exactly `desc.size` bytes).
 */
export async function pushBlob(
  rq: Requester,
  chunking: Chunking,
  ref: ImageReference,
  desc: Descriptor,
  open: () => Readable,
  options: PushBlobOptions = {},
): Promise<void> {
  assertDigest(ref, desc.digest);
  const scopes = [pushScope(ref.repository)];
  if (options.mountFrom && options.mountFrom !== ref.repository) scopes.push(pullScope(options.mountFrom));
  if (await headBlob(rq, ref, desc.digest, scopes)) return;
  await retrying(
    rq.retries(),
    (err) => err instanceof RegistryError && err.retryable,
    () => uploadBlob(rq, chunking, ref, desc, open, scopes, options.mountFrom),
  );
}

/**
 * Puts a manifest or index under `ref`'s tag (or digest when it has no tag). Returns its digest;
 * a digest in `ref` must match the bytes.
 */
export async function pushManifest(rq: Requester, ref: ImageReference, mediaType: string, bytes: Buffer): Promise<Digest> {
  const digest = sha256(bytes);
  if (ref.digest && ref.digest !== digest) {
    throw new ContentVerificationError(`manifest for ${ref} has digest ${digest}, not ${ref.digest}`, ref.registry);
  }
  const target = ref.tag ?? digest;
  const ep = rq.endpoints.origin(ref.registry);
  const res = await rq.call(ep, {
    method: 'PUT',
    url: apiUrl(ep, ref, `manifests/${target}`),
    scopes: [pushScope(ref.repository)],
    headers: { 'content-type': mediaType },
    body: () => bytes,
  });
  if (res.statusCode < 200 || res.statusCode >= 300) throw await errorFrom(ref, res, `pushing manifest to ${ref}`);
  await res.dump();
  const returned = headerValue(res.headers['docker-content-digest']);
  if (returned && isSha256Digest(returned) && returned !== digest) {
    throw new ContentVerificationError(`registry stored manifest for ${ref} as ${returned}, expected ${digest}`, ref.registry);
  }
  return digest;
}

async function uploadBlob(
  rq: Requester,
  chunking: Chunking,
  ref: ImageReference,
  desc: Descriptor,
  open: () => Readable,
  scopes: readonly string[],
  mountFrom: string | undefined,
): Promise<void> {
  const ep = rq.endpoints.origin(ref.registry);
  const start = apiUrl(ep, ref, 'blobs/uploads/');
  if (mountFrom && mountFrom !== ref.repository) {
    start.searchParams.set('mount', desc.digest);
    start.searchParams.set('from', mountFrom);
  }
  const started = await rq.call(ep, { method: 'POST', url: start, scopes, body: () => '', headers: { 'content-length': '0' } });
  await started.dump();
  if (started.statusCode === 201) return; // mounted from the other repository
  if (started.statusCode !== 202) throw await errorFrom(ref, started, `starting upload of ${desc.digest} to ${ref.name}`);
  let location = uploadLocation(ref, started, start);

  const chunked = desc.size > chunking.threshold;
  if (chunked) location = await uploadChunks(rq, chunking.size, ep, ref, desc, open, scopes, location);

  const res = await rq.call(ep, {
    method: 'PUT',
    url: withQuery(location, 'digest', desc.digest),
    scopes,
    headers: { 'content-type': 'application/octet-stream', 'content-length': chunked ? '0' : String(desc.size) },
    body: chunked ? () => '' : open,
    retry: false,
  });
  if (res.statusCode !== 201 && res.statusCode !== 204) {
    throw await errorFrom(ref, res, `uploading blob ${desc.digest} to ${ref.name}`);
  }
  await res.dump();
}

/**
 * Sends the blob as PATCH chunks into the upload session at `location`; returns the location
 * for the closing PUT. Each chunk is streamed from `open()`'s stream, never buffered whole.
 * When a chunk fails or the registry's Range says it kept less than was sent, the session's
 * state is asked for (GET on the upload location) and the upload resumes from the offset the
 * registry reports, reading a fresh stream up to it.
 */
async function uploadChunks(
  rq: Requester,
  chunkSize: number,
  ep: Endpoint,
  ref: ImageReference,
  desc: Descriptor,
  open: () => Readable,
  scopes: readonly string[],
  initial: URL,
): Promise<URL> {
  const resumes = rq.retries(MAX_UPLOAD_RESUMES);
  let location = initial;
  let offset = 0;
  let source = new ChunkSource(open());
  try {
    while (offset < desc.size) {
      const length = Math.min(chunkSize, desc.size - offset);
      const from = offset;
      let failure: unknown;
      let used = false;
      try {
        const res = await rq.call(ep, {
          method: 'PATCH',
          url: location,
          scopes,
          headers: {
            'content-type': 'application/octet-stream',
            'content-length': String(length),
            'content-range': `${from}-${from + length - 1}`,
          },
          body: () => {
            // A second attempt (re-authentication) cannot replay a consumed chunk: resume instead.
            if (used) throw new RegistryError(`chunk of ${desc.digest} must be resent`, ref.registry, undefined, undefined, true);
            used = true;
            return source.take(length);
          },
          retry: false,
        });
        if (res.statusCode === 202 || res.statusCode === 204) {
          await res.dump();
          location = uploadLocation(ref, res, location);
          const end = rangeEnd(res);
          offset = end === undefined ? from + length : end + 1;
          if (offset === from + length) continue;
          failure = new RegistryError(`registry kept ${offset} of ${from + length} bytes of ${desc.digest}`, ref.registry, res.statusCode, undefined, true);
        } else {
          throw await errorFrom(ref, res, `uploading a chunk of blob ${desc.digest} to ${ref.name}`);
        }
      } catch (err) {
        if (!(err instanceof RegistryError && err.retryable) && !isNetworkError(err)) throw err;
        failure = err;
      }
      // Resume: ask the session where it stands, then read a fresh stream up to there.
      if (!(await resumes.next())) throw failure;
      const status = await uploadStatus(rq, ep, ref, desc, scopes, location);
      location = status.location;
      offset = status.offset;
      source.destroy();
      source = new ChunkSource(open());
      await source.skip(offset);
    }
    return location;
  } finally {
    source.destroy();
  }
}

/** GET on an upload session: its current location and how many bytes the registry holds. */
async function uploadStatus(
  rq: Requester,
  ep: Endpoint,
  ref: ImageReference,
  desc: Descriptor,
  scopes: readonly string[],
  location: URL,
): Promise<{ location: URL; offset: number }> {
  const res = await rq.call(ep, { method: 'GET', url: location, scopes });
  if (res.statusCode !== 204 && res.statusCode !== 200) {
    throw await errorFrom(ref, res, `checking the upload of ${desc.digest} to ${ref.name}`);
  }
  await res.dump();
  const end = rangeEnd(res);
  return { location: uploadLocation(ref, res, location), offset: end === undefined ? 0 : end + 1 };
}

function rangeEnd(res: HttpResponse): number | undefined {
  const m = /^(?:bytes=)?\d+-(\d+)$/.exec((headerValue(res.headers.range) ?? '').trim());
  return m ? Number(m[1]) : undefined;
}

function uploadLocation(ref: ImageReference, res: HttpResponse, base: URL): URL {
  const location = headerValue(res.headers.location);
  if (!location) throw new RegistryError(`registry gave no upload location in ${ref.name}`, ref.registry, res.statusCode);
  return new URL(location, base);
}

/** Adds a query parameter without re-encoding the ones already there (upload locations carry opaque state). */
function withQuery(url: URL, key: string, value: string): URL {
  const sep = url.search ? '&' : '?';
  return new URL(`${url.origin}${url.pathname}${url.search}${sep}${key}=${encodeURIComponent(value)}`);
}

/**
 * Hands out consecutive byte ranges of one stream as streams of their own (upload chunks),
 * without buffering more than the stream's own chunks.
 */
class ChunkSource {
  private readonly iterator: AsyncIterator<Buffer>;
  private leftover: Buffer | undefined;

  constructor(private readonly stream: Readable) {
    this.iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  /** The next `length` bytes as a stream; fails if the source ends first. */
  take(length: number): Readable {
    return Readable.from(this.bytes(length), { objectMode: false });
  }

  async skip(length: number): Promise<void> {
    for await (const _ of this.bytes(length)) {
      // discard
    }
  }

  destroy(): void {
    this.stream.destroy();
  }

  private async *bytes(length: number): AsyncGenerator<Buffer> {
    let remaining = length;
    while (remaining > 0) {
      let chunk = this.leftover;
      this.leftover = undefined;
      if (!chunk) {
        const next = await this.iterator.next();
        if (next.done) throw new Error(`blob stream ended ${remaining} bytes early`);
        chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
      }
      if (chunk.length > remaining) {
        this.leftover = chunk.subarray(remaining);
        chunk = chunk.subarray(0, remaining);
      }
      remaining -= chunk.length;
      yield chunk;
    }
  }
}

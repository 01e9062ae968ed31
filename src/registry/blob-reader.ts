// Reading blobs: a HEAD for existence, and a GET whose body is relayed as one stream that
// survives dropped connections by resuming with a Range request where it stopped.

import { Readable } from 'node:stream';
import type { Descriptor, Digest } from '../oci/types.js';
import { pullScope } from './auth.js';
import { apiUrl, type Endpoint } from './endpoints.js';
import { ContentVerificationError, NotFoundError, RegistryError } from './errors.js';
import type { HttpResponse } from './http.js';
import { assertDigest } from './manifest.js';
import type { ImageReference } from './reference.js';
import { errorCode, errorFrom, headerValue, type Requester } from './request.js';
import { isNetworkError } from './retry.js';

const MAX_BLOB_RESUMES = 5;

/**
 * A stream of the blob's bytes (redirects followed). The caller verifies digest and size,
 * typically by piping into ContentStore.ingest. A connection dropped mid-body is resumed with a
 * Range request, transparently to the reader.
 */
export async function fetchBlob(rq: Requester, ref: ImageReference, desc: Descriptor): Promise<Readable> {
  assertDigest(ref, desc.digest);
  const { ep, res } = await rq.endpoints.pull(ref, async (ep) => ({ ep, res: await openBlob(rq, ep, ref, desc, 0) }));
  return blobStream(rq, ep, ref, desc, res);
}

/** Whether the repository has the blob (HEAD), asked with `scopes` (a push asks with its own). */
export async function headBlob(rq: Requester, ref: ImageReference, digest: Digest, scopes: readonly string[]): Promise<boolean> {
  assertDigest(ref, digest);
  const ep = rq.endpoints.origin(ref.registry);
  const res = await rq.call(ep, { method: 'HEAD', url: apiUrl(ep, ref, `blobs/${digest}`), scopes, followRedirects: true });
  await res.dump();
  if (res.statusCode === 200) return true;
  if (res.statusCode === 404) return false;
  throw await errorFrom(ref, res, `checking blob ${digest} in ${ref.name}`);
}

async function openBlob(rq: Requester, ep: Endpoint, ref: ImageReference, desc: Descriptor, offset: number): Promise<HttpResponse> {
  const res = await rq.call(ep, {
    method: 'GET',
    url: apiUrl(ep, ref, `blobs/${desc.digest}`),
    scopes: [pullScope(ref.repository)],
    headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
    followRedirects: true,
    bulk: true,
  });
  if (res.statusCode === 200 || (offset > 0 && res.statusCode === 206)) return res;
  if (res.statusCode === 404) {
    const code = await errorCode(res);
    throw new NotFoundError(`blob ${desc.digest} in ${ref.name}`, ref.registry, code);
  }
  throw await errorFrom(ref, res, `fetching blob ${desc.digest} from ${ref.name}`);
}

/**
 * The blob's bytes as one stream, resuming after dropped connections; never more than desc.size
 * bytes. Event-driven with backpressure (pause/resume) rather than async iteration, which costs
 * several times the CPU per chunk on a fast link.
 */
function blobStream(rq: Requester, ep: Endpoint, ref: ImageReference, desc: Descriptor, first: HttpResponse): Readable {
  let current: HttpResponse['body'] | undefined;
  let stopped = false;
  const out = new Readable({
    highWaterMark: 256 * 1024,
    read: () => current?.resume(),
    destroy: (err, callback) => {
      stopped = true;
      current?.destroy();
      callback(err);
    },
  });

  /** Relays one response body; resolves with the offset reached when it ends. */
  const relay = (res: HttpResponse, offset: number, skip: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const body = res.body;
      current = body;
      body.on('data', (raw: Buffer) => {
        let chunk = raw;
        if (skip > 0) {
          const n = Math.min(skip, chunk.length);
          skip -= n;
          chunk = chunk.subarray(n);
          if (chunk.length === 0) return;
        }
        offset += chunk.length;
        if (offset > desc.size) {
          body.destroy();
          reject(new ContentVerificationError(`blob ${desc.digest} from ${ref.name} is larger than its ${desc.size} bytes`, ref.registry));
          return;
        }
        if (!out.push(chunk)) body.pause();
      });
      body.once('end', () => resolve(offset));
      body.once('error', (err) => reject(Object.assign(err, { offset })));
      body.once('close', () => {
        if (stopped) reject(new Error('blob stream closed by its reader'));
      });
    });

  const pump = async (): Promise<void> => {
    const resumes = rq.retries(MAX_BLOB_RESUMES);
    let res = first;
    let offset = 0;
    for (;;) {
      // A 200 answer to a Range request restarts at zero: skip what the reader already has.
      const skip = res.statusCode === 200 ? offset : rangeStart(res) === offset ? 0 : -1;
      if (skip < 0) {
        await res.dump();
        throw new RegistryError(`registry answered a resume of blob ${desc.digest} from the wrong offset`, ref.registry);
      }
      try {
        offset = await relay(res, offset, skip);
        if (offset >= desc.size) {
          out.push(null);
          return;
        }
        // The body ended short without an error: resumed like a dropped connection.
        if (!(await resumes.next())) {
          throw new RegistryError(`blob ${desc.digest} from ${ref.name} ended after ${offset} of ${desc.size} bytes`, ref.registry);
        }
      } catch (err) {
        if (stopped) return;
        const reached = (err as { offset?: unknown }).offset;
        if (typeof reached === 'number') offset = reached;
        if (!isNetworkError(err) || !(await resumes.next())) throw err;
      }
      if (stopped) return;
      res = await openBlob(rq, ep, ref, desc, offset);
    }
  };
  pump().catch((err: unknown) => out.destroy(err as Error));
  return out;
}

function rangeStart(res: HttpResponse): number | undefined {
  const m = /^bytes (\d+)-/.exec(headerValue(res.headers['content-range']) ?? '');
  return m ? Number(m[1]) : undefined;
}

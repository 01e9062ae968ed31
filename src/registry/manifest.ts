// Fetching manifests and indexes: by digest or tag, from the content cache when it has them,
// each verified against the digest asked for (else the one the registry announces), with the
// media type taken from the document, its Content-Type, or its shape.

import { isSha256Digest, sha256 } from '../oci/digest.js';
import { MediaType, isIndexMediaType, isManifestMediaType, type Descriptor, type Digest } from '../oci/types.js';
import { pullScope } from './auth.js';
import { apiUrl, type Endpoint } from './endpoints.js';
import { ContentVerificationError, NotFoundError, UnsupportedManifestError } from './errors.js';
import type { HttpResponse } from './http.js';
import type { ImageReference } from './reference.js';
import { errorCode, errorFrom, headerValue, readLimited, type Requester } from './request.js';
import { isNetworkError, retrying } from './retry.js';

/** Accept header for manifests: OCI and Docker schema 2, indexes and single manifests. */
export const MANIFEST_ACCEPT = [MediaType.OciIndex, MediaType.OciManifest, MediaType.DockerManifestList, MediaType.DockerManifest].join(', ');

const SCHEMA1_MEDIA_TYPES = new Set([
  'application/vnd.docker.distribution.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
]);
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** A manifest or index as the registry served it, verified against its digest when known. */
export interface FetchedManifest {
  digest: Digest;
  mediaType: string;
  bytes: Buffer;
}

/** Small verified blobs (manifests, indexes, configs) by digest. */
export interface ContentCache {
  get(digest: Digest): Promise<Buffer | undefined>;
  put(digest: Digest, bytes: Buffer): Promise<void>;
  /**
   * Whether this tag was pulled before (its manifest may be here). When it says no, the tag's
   * manifest is fetched at once, without the HEAD that would only cost a round trip; without
   * this method every tag is HEADed first.
   */
  pulledBefore?(ref: ImageReference): Promise<boolean>;
}

/**
 * Fetches the manifest or index `ref` names (by digest if it has one, else by tag), verified
 * against the digest asked for, else against Docker-Content-Digest when the registry sends it.
 */
export async function fetchManifest(
  rq: Requester,
  cache: ContentCache | undefined,
  ref: ImageReference,
  expected?: Pick<Descriptor, 'digest' | 'size'>,
): Promise<FetchedManifest> {
  const known = expected?.digest ?? ref.digest;
  if (known) {
    const cached = await fromCache(cache, ref, known);
    if (cached) return cached;
  }
  const fetched = await rq.endpoints.pull(ref, async (ep) => {
    if (!known && cache && (await cache.pulledBefore?.(ref)) !== false) {
      // A tag: HEAD is enough when we already hold what it points at.
      const digest = await headManifest(rq, ep, ref);
      const cached = digest && (await fromCache(cache, ref, digest));
      if (cached) return cached;
    }
    // `call` retries failures before the response; this covers a connection lost mid-body.
    return retrying(rq.retriesFor(ep), isNetworkError, () => fetchManifestOnce(rq, ep, ref, expected));
  });
  if (cache) await cache.put(fetched.digest, fetched.bytes);
  return fetched;
}

/** The digest a tag points at (HEAD), or undefined when the registry does not say. */
async function headManifest(rq: Requester, ep: Endpoint, ref: ImageReference): Promise<Digest | undefined> {
  const res = await requestManifest(rq, ep, ref, 'HEAD');
  await res.dump();
  const digest = headerValue(res.headers['docker-content-digest']);
  return res.statusCode === 200 && digest && isSha256Digest(digest) ? digest : undefined;
}

function requestManifest(rq: Requester, ep: Endpoint, ref: ImageReference, method: 'GET' | 'HEAD'): Promise<HttpResponse> {
  return rq.call(ep, {
    method,
    url: apiUrl(ep, ref, `manifests/${ref.pullReference}`),
    scopes: [pullScope(ref.repository)],
    headers: { accept: MANIFEST_ACCEPT },
    followRedirects: true,
  });
}

/** A manifest from the content cache, checked again against its digest. */
async function fromCache(cache: ContentCache | undefined, ref: ImageReference, digest: Digest): Promise<FetchedManifest | undefined> {
  const bytes = await cache?.get(digest);
  if (!bytes || sha256(bytes) !== digest) return undefined;
  return { digest, mediaType: manifestMediaType(ref, bytes, undefined), bytes };
}

async function fetchManifestOnce(rq: Requester, ep: Endpoint, ref: ImageReference, expected?: Pick<Descriptor, 'digest' | 'size'>): Promise<FetchedManifest> {
  const res = await requestManifest(rq, ep, ref, 'GET');
  if (res.statusCode === 404) {
    const code = await errorCode(res);
    throw new NotFoundError(ref.toString(), ref.registry, code);
  }
  if (res.statusCode !== 200) throw await errorFrom(ref, res, `fetching manifest ${ref}`);
  const bytes = await readLimited(res.body, MAX_MANIFEST_BYTES, `manifest ${ref}`, ref.registry);
  const digest = sha256(bytes);
  const headerDigest = headerValue(res.headers['docker-content-digest']);
  const wanted = expected?.digest ?? ref.digest ?? (headerDigest && isSha256Digest(headerDigest) ? headerDigest : undefined);
  if (wanted && wanted !== digest) {
    throw new ContentVerificationError(`manifest digest mismatch for ${ref}: expected ${wanted}, got ${digest}`, ref.registry);
  }
  if (expected && expected.size !== bytes.length) {
    throw new ContentVerificationError(`manifest size mismatch for ${ref}: expected ${expected.size} bytes, got ${bytes.length}`, ref.registry);
  }
  const mediaType = manifestMediaType(ref, bytes, headerValue(res.headers['content-type']));
  return { digest, mediaType, bytes };
}

/** The manifest's media type: its own mediaType field, else Content-Type, else inferred from its shape. */
function manifestMediaType(ref: ImageReference, bytes: Buffer, contentType: string | undefined): string {
  const doc = parseJson<{ schemaVersion?: number; mediaType?: string; manifests?: unknown; config?: unknown }>(
    bytes,
    `manifest of ${ref}`,
    ref.registry,
  );
  const header = contentType?.split(';')[0]?.trim();
  const candidate = doc.mediaType ?? header;
  if (doc.schemaVersion === 1 || (candidate && SCHEMA1_MEDIA_TYPES.has(candidate))) {
    throw new UnsupportedManifestError(
      `unsupported manifest for ${ref}: Docker image manifest schema 1 is no longer supported; re-push the image with a current docker, buildah or skopeo (schema 2 or OCI)`,
      ref.registry,
    );
  }
  if (doc.mediaType) return doc.mediaType;
  if (header && (isIndexMediaType(header) || isManifestMediaType(header))) return header;
  if (Array.isArray(doc.manifests)) return MediaType.OciIndex;
  if (doc.config) return MediaType.OciManifest;
  throw new UnsupportedManifestError(`cannot tell the media type of the manifest of ${ref}`, ref.registry);
}

export function parseJson<T>(bytes: Buffer, what: string, registry: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw new UnsupportedManifestError(`${what} is not valid JSON: ${(err as Error).message}`, registry);
  }
}

/** Refuses a digest in a document that is not a sha256 one. */
export function assertDigest(ref: ImageReference, digest: string): asserts digest is Digest {
  if (!isSha256Digest(digest)) throw new UnsupportedManifestError(`invalid or unsupported digest "${digest}" in ${ref}`, ref.registry);
}

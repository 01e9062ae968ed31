// The OCI distribution client: resolve a reference to a platform's manifest and config, stream
// blobs out, push blobs and manifests in. One instance per build, so tokens and connections are
// shared by every pull and push of that build.
//
// Every request goes through `call`, which owns the cross-cutting rules:
//   - plain HTTP for loopback (and configured insecure) registries, HTTPS otherwise;
//   - Authorization from the Authenticator, with one re-authentication on 401;
//   - retries with backoff + jitter on connection errors, 429 and 5xx (Retry-After honoured);
//   - redirects followed by hand, dropping credentials when they leave the registry's origin.

import { createHash } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import {
  MediaType,
  isIndexMediaType,
  isManifestMediaType,
  type Descriptor,
  type Digest,
  type ImageConfigFile,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from '../oci/types.js';
import { Authenticator, DockerConfigCredentialStore, pullScope, pushScope, type CredentialStore } from './auth.js';
import {
  AuthenticationError,
  ContentVerificationError,
  NotFoundError,
  PlatformNotFoundError,
  RegistryError,
  UnsupportedManifestError,
} from './errors.js';
import { formatPlatform, isAttestation, normalisePlatform, platformRank, selectManifest } from './platform.js';
import { ImageReference, isInsecureByDefault, registryHost } from './reference.js';
import {
  DEFAULT_RETRY,
  backoffDelay,
  isNetworkError,
  isRetryableStatus,
  parseRetryAfter,
  wait,
  type RetryPolicy,
} from './retry.js';

export interface RegistryClientOptions {
  /** Where credentials come from; defaults to docker's config.json. */
  credentials?: CredentialStore;
  /** Registries (host or host:port) spoken to over plain HTTP besides loopback ones. */
  insecureRegistries?: readonly string[];
  userAgent?: string;
  retry?: Partial<RetryPolicy>;
  /** An undici dispatcher to use instead of the client's own Agent (not closed by close()). */
  dispatcher?: Dispatcher;
}

export interface ResolvedImage {
  /** The reference asked for, with the digest of the platform manifest (the tag is kept). */
  ref: ImageReference;
  manifestDigest: Digest;
  manifest: ImageManifest;
  manifestBytes: Buffer;
  mediaType: string;
  config: ImageConfigFile;
  configDigest: Digest;
  configBytes: Buffer;
  /** Digest of the index the manifest was picked from, when the reference named one. */
  indexDigest?: Digest;
}

/** A manifest or index as the registry served it, verified against its digest when known. */
export interface FetchedManifest {
  digest: Digest;
  mediaType: string;
  bytes: Buffer;
}

export interface PushBlobOptions {
  /** A repository on the same registry that already holds the blob: ask for a cross-repo mount first. */
  mountFrom?: string;
}

/** Accept header for manifests: OCI and Docker schema 2, indexes and single manifests. */
export const MANIFEST_ACCEPT = [MediaType.OciIndex, MediaType.OciManifest, MediaType.DockerManifestList, MediaType.DockerManifest].join(', ');

const SCHEMA1_MEDIA_TYPES = new Set([
  'application/vnd.docker.distribution.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
]);
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_CONFIG_BYTES = 32 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const MAX_REDIRECTS = 10;
const MAX_INDEX_DEPTH = 4;
const MAX_BLOB_RESUMES = 5;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT';

interface CallOptions {
  method: Method;
  url: URL;
  scopes: readonly string[];
  headers?: Record<string, string>;
  /** Called once per attempt: a retried request needs a fresh body stream. */
  body?: () => string | Buffer | Readable;
  followRedirects?: boolean;
  /** False for requests that cannot simply be repeated (a blob PUT into an upload session). */
  retry?: boolean;
}

export class RegistryClient {
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly auth: Authenticator;
  private readonly insecure: readonly string[];
  private readonly userAgent: string;
  private readonly retryPolicy: RetryPolicy;

  constructor(options: RegistryClientOptions = {}) {
    this.ownsDispatcher = !options.dispatcher;
    this.dispatcher = options.dispatcher ?? new Agent({ connections: 16, keepAliveTimeout: 10_000 });
    this.insecure = options.insecureRegistries ?? [];
    this.userAgent = options.userAgent ?? 'builder/0.1';
    this.retryPolicy = { ...DEFAULT_RETRY, ...options.retry };
    this.auth = new Authenticator({
      credentials: options.credentials ?? new DockerConfigCredentialStore(),
      dispatcher: this.dispatcher,
      userAgent: this.userAgent,
    });
  }

  /** Closes pooled connections (only those of the client's own Agent). */
  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  // -------------------------------------------------------------------------------------------
  // Pull

  /**
   * Resolves `ref` to the manifest and config for `platform`: an index or manifest list is
   * narrowed to the best matching entry; every document is verified against its digest.
   */
  async resolve(ref: ImageReference, platform: Platform): Promise<ResolvedImage> {
    return this.resolveFrom(ref, await this.fetchManifest(ref), platform, undefined, 0);
  }

  private async resolveFrom(
    ref: ImageReference,
    fetched: FetchedManifest,
    platform: Platform,
    indexDigest: Digest | undefined,
    depth: number,
  ): Promise<ResolvedImage> {
    if (isManifestMediaType(fetched.mediaType)) return this.loadImage(ref, fetched, indexDigest);
    if (!isIndexMediaType(fetched.mediaType)) {
      throw new UnsupportedManifestError(`unsupported manifest media type "${fetched.mediaType}" for ${ref}`, ref.registry);
    }
    if (depth >= MAX_INDEX_DEPTH) throw new UnsupportedManifestError(`image index nesting too deep for ${ref}`, ref.registry);
    const index = parseJson<ImageIndex>(fetched.bytes, `index of ${ref}`, ref.registry);
    if (!Array.isArray(index.manifests)) throw new UnsupportedManifestError(`index of ${ref} has no manifests list`, ref.registry);
    const top = indexDigest ?? fetched.digest;

    const chosen = selectManifest(index.manifests, platform);
    if (chosen) {
      assertDigest(ref, chosen.digest);
      const child = await this.fetchManifest(ref.withDigest(chosen.digest), chosen);
      return this.resolveFrom(ref, child, platform, top, depth + 1);
    }
    // Entries without a platform (as some tools write them) count if their config matches, as in containerd.
    for (const desc of index.manifests) {
      if (desc.platform || isAttestation(desc) || !DIGEST_RE.test(desc.digest)) continue;
      const child = await this.fetchManifest(ref.withDigest(desc.digest), desc);
      if (!isManifestMediaType(child.mediaType)) continue;
      const image = await this.loadImage(ref, child, top);
      if (platformRank(platform, image.config) !== undefined) return image;
    }
    throw platformNotFound(ref, index, platform);
  }

  /** Completes a single-platform manifest with its verified config. */
  private async loadImage(ref: ImageReference, fetched: FetchedManifest, indexDigest: Digest | undefined): Promise<ResolvedImage> {
    const manifest = parseJson<ImageManifest>(fetched.bytes, `manifest of ${ref}`, ref.registry);
    validateManifest(ref, manifest);
    const configBytes = await this.fetchSmallBlob(ref, manifest.config, MAX_CONFIG_BYTES);
    const config = parseJson<ImageConfigFile>(configBytes, `image config of ${ref}`, ref.registry);
    const resolved: ResolvedImage = {
      ref: ref.withDigest(fetched.digest),
      manifestDigest: fetched.digest,
      manifest,
      manifestBytes: fetched.bytes,
      mediaType: fetched.mediaType,
      config,
      configDigest: manifest.config.digest,
      configBytes,
    };
    if (indexDigest) resolved.indexDigest = indexDigest;
    return resolved;
  }

  /**
   * Fetches the manifest or index `ref` names (by digest if it has one, else by tag), verified
   * against the digest asked for, else against Docker-Content-Digest when the registry sends it.
   */
  async fetchManifest(ref: ImageReference, expected?: Pick<Descriptor, 'digest' | 'size'>): Promise<FetchedManifest> {
    // `call` retries failures before the response; this covers a connection lost mid-body.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.fetchManifestOnce(ref, expected);
      } catch (err) {
        if (!isNetworkError(err) || attempt >= this.retryPolicy.retries) throw err;
        await wait(backoffDelay(attempt, this.retryPolicy));
      }
    }
  }

  private async fetchManifestOnce(ref: ImageReference, expected?: Pick<Descriptor, 'digest' | 'size'>): Promise<FetchedManifest> {
    const res = await this.call(ref, {
      method: 'GET',
      url: this.url(ref, `manifests/${ref.pullReference}`),
      scopes: [pullScope(ref.repository)],
      headers: { accept: MANIFEST_ACCEPT },
      followRedirects: true,
    });
    if (res.statusCode === 404) {
      const code = await errorCode(res);
      throw new NotFoundError(ref.toString(), ref.registry, code);
    }
    if (res.statusCode !== 200) throw await this.errorFrom(ref, res, `fetching manifest ${ref}`);
    const bytes = await readLimited(res.body, MAX_MANIFEST_BYTES, `manifest ${ref}`, ref.registry);
    const digest = sha256(bytes);
    const headerDigest = headerValue(res.headers['docker-content-digest']);
    const wanted = expected?.digest ?? ref.digest ?? (headerDigest && DIGEST_RE.test(headerDigest) ? (headerDigest as Digest) : undefined);
    if (wanted && wanted !== digest) {
      throw new ContentVerificationError(`manifest digest mismatch for ${ref}: expected ${wanted}, got ${digest}`, ref.registry);
    }
    if (expected && expected.size !== bytes.length) {
      throw new ContentVerificationError(`manifest size mismatch for ${ref}: expected ${expected.size} bytes, got ${bytes.length}`, ref.registry);
    }
    const mediaType = manifestMediaType(ref, bytes, headerValue(res.headers['content-type']));
    return { digest, mediaType, bytes };
  }

  /**
   * A stream of the blob's bytes (redirects followed). The caller verifies digest and size,
   * typically by piping into ContentStore.ingest. A connection dropped mid-body is resumed with a
   * Range request, transparently to the reader.
   */
  async fetchBlob(ref: ImageReference, desc: Descriptor): Promise<Readable> {
    assertDigest(ref, desc.digest);
    const first = await this.openBlob(ref, desc, 0);
    return Readable.from(this.blobChunks(ref, desc, first), { objectMode: false, highWaterMark: 64 * 1024 });
  }

  /** Whether the repository has the blob (HEAD). */
  async hasBlob(ref: ImageReference, digest: Digest): Promise<boolean> {
    return this.headBlob(ref, digest, [pullScope(ref.repository)]);
  }

  // -------------------------------------------------------------------------------------------
  // Push

  /**
   * Uploads a blob unless the repository already has it: optionally a cross-repo mount, else
   * POST an upload session and PUT the whole stream (`open` is called again for each attempt and
   * must return a fresh stream of exactly `desc.size` bytes).
   */
  async pushBlob(ref: ImageReference, desc: Descriptor, open: () => Readable, options: PushBlobOptions = {}): Promise<void> {
    assertDigest(ref, desc.digest);
    const scopes = [pushScope(ref.repository)];
    if (options.mountFrom && options.mountFrom !== ref.repository) scopes.push(pullScope(options.mountFrom));
    if (await this.headBlob(ref, desc.digest, scopes)) return;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.uploadBlob(ref, desc, open, scopes, options.mountFrom);
        return;
      } catch (err) {
        if (!(err instanceof RegistryError && err.retryable) || attempt >= this.retryPolicy.retries) throw err;
        await wait(backoffDelay(attempt, this.retryPolicy));
      }
    }
  }

  /**
   * Puts a manifest or index under `ref`'s tag (or digest when it has no tag). Returns its digest;
   * a digest in `ref` must match the bytes.
   */
  async pushManifest(ref: ImageReference, mediaType: string, bytes: Buffer): Promise<Digest> {
    const digest = sha256(bytes);
    if (ref.digest && ref.digest !== digest) {
      throw new ContentVerificationError(`manifest for ${ref} has digest ${digest}, not ${ref.digest}`, ref.registry);
    }
    const target = ref.tag ?? digest;
    const res = await this.call(ref, {
      method: 'PUT',
      url: this.url(ref, `manifests/${target}`),
      scopes: [pushScope(ref.repository)],
      headers: { 'content-type': mediaType },
      body: () => bytes,
    });
    if (res.statusCode < 200 || res.statusCode >= 300) throw await this.errorFrom(ref, res, `pushing manifest to ${ref}`);
    await res.body.dump();
    const returned = headerValue(res.headers['docker-content-digest']);
    if (returned && DIGEST_RE.test(returned) && returned !== digest) {
      throw new ContentVerificationError(`registry stored manifest for ${ref} as ${returned}, expected ${digest}`, ref.registry);
    }
    return digest;
  }

  // -------------------------------------------------------------------------------------------
  // Internals: blobs

  private async headBlob(ref: ImageReference, digest: Digest, scopes: readonly string[]): Promise<boolean> {
    assertDigest(ref, digest);
    const res = await this.call(ref, { method: 'HEAD', url: this.url(ref, `blobs/${digest}`), scopes, followRedirects: true });
    await res.body.dump();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw await this.errorFrom(ref, res, `checking blob ${digest} in ${ref.name}`);
  }

  private async openBlob(ref: ImageReference, desc: Descriptor, offset: number): Promise<Dispatcher.ResponseData> {
    const res = await this.call(ref, {
      method: 'GET',
      url: this.url(ref, `blobs/${desc.digest}`),
      scopes: [pullScope(ref.repository)],
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      followRedirects: true,
    });
    if (res.statusCode === 200 || (offset > 0 && res.statusCode === 206)) return res;
    if (res.statusCode === 404) {
      const code = await errorCode(res);
      throw new NotFoundError(`blob ${desc.digest} in ${ref.name}`, ref.registry, code);
    }
    throw await this.errorFrom(ref, res, `fetching blob ${desc.digest} from ${ref.name}`);
  }

  /** Yields the blob's bytes, resuming after dropped connections; never more than desc.size bytes. */
  private async *blobChunks(ref: ImageReference, desc: Descriptor, first: Dispatcher.ResponseData): AsyncGenerator<Buffer> {
    let res = first;
    let offset = 0;
    for (let resumes = 0; ; resumes++) {
      // A 200 answer to a Range request restarts at zero: skip what the reader already has.
      let skip = res.statusCode === 200 ? offset : rangeStart(res) === offset ? 0 : -1;
      if (skip < 0) {
        await res.body.dump();
        throw new RegistryError(`registry answered a resume of blob ${desc.digest} from the wrong offset`, ref.registry);
      }
      try {
        for await (const raw of res.body) {
          let chunk = raw as Buffer;
          if (skip > 0) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          offset += chunk.length;
          if (offset > desc.size) {
            throw new ContentVerificationError(`blob ${desc.digest} from ${ref.name} is larger than its ${desc.size} bytes`, ref.registry);
          }
          yield chunk;
        }
        if (offset >= desc.size) return;
        if (resumes >= MAX_BLOB_RESUMES) {
          throw new RegistryError(`blob ${desc.digest} from ${ref.name} ended after ${offset} of ${desc.size} bytes`, ref.registry);
        }
      } catch (err) {
        if (!isNetworkError(err) || resumes >= MAX_BLOB_RESUMES) throw err;
        await wait(backoffDelay(resumes, this.retryPolicy));
      }
      res = await this.openBlob(ref, desc, offset);
    }
  }

  private async uploadBlob(
    ref: ImageReference,
    desc: Descriptor,
    open: () => Readable,
    scopes: readonly string[],
    mountFrom: string | undefined,
  ): Promise<void> {
    const start = this.url(ref, 'blobs/uploads/');
    if (mountFrom && mountFrom !== ref.repository) {
      start.searchParams.set('mount', desc.digest);
      start.searchParams.set('from', mountFrom);
    }
    const started = await this.call(ref, { method: 'POST', url: start, scopes, body: () => '' });
    await started.body.dump();
    if (started.statusCode === 201) return; // mounted from the other repository
    if (started.statusCode !== 202) throw await this.errorFrom(ref, started, `starting upload of ${desc.digest} to ${ref.name}`);
    const location = headerValue(started.headers.location);
    if (!location) throw new RegistryError(`registry gave no upload location for ${desc.digest} in ${ref.name}`, ref.registry, 202);

    const put = withQuery(new URL(location, start), 'digest', desc.digest);
    const res = await this.call(ref, {
      method: 'PUT',
      url: put,
      scopes,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
      body: open,
      retry: false,
    });
    if (res.statusCode !== 201 && res.statusCode !== 204) {
      throw await this.errorFrom(ref, res, `uploading blob ${desc.digest} to ${ref.name}`);
    }
    await res.body.dump();
  }

  private async fetchSmallBlob(ref: ImageReference, desc: Descriptor, limit: number): Promise<Buffer> {
    if (desc.size > limit) {
      throw new UnsupportedManifestError(`blob ${desc.digest} of ${ref} is ${desc.size} bytes, over the ${limit} byte limit`, ref.registry);
    }
    const bytes = await readLimited(await this.fetchBlob(ref, desc), limit, `blob ${desc.digest}`, ref.registry);
    const digest = sha256(bytes);
    if (digest !== desc.digest || bytes.length !== desc.size) {
      throw new ContentVerificationError(
        `blob ${desc.digest} of ${ref} does not match: got ${digest} (${bytes.length} bytes, expected ${desc.size})`,
        ref.registry,
      );
    }
    return bytes;
  }

  // -------------------------------------------------------------------------------------------
  // Internals: HTTP

  private url(ref: ImageReference, path: string): URL {
    const host = registryHost(ref.registry);
    const scheme = isInsecureByDefault(host, this.insecure) || isInsecureByDefault(ref.registry, this.insecure) ? 'http' : 'https';
    return new URL(`${scheme}://${host}/v2/${ref.repository}/${path}`);
  }

  /**
   * Sends one logical request: authenticates, retries transient failures and follows redirects.
   * Returns the final response whatever its status, except 401 after re-authenticating (thrown).
   */
  private async call(ref: ImageReference, opts: CallOptions): Promise<Dispatcher.ResponseData> {
    const registry = ref.registry;
    const host = registryHost(registry);
    // Credentials go to the registry's own origin only, as in containerd: never to a redirect
    // target (blob storage) or an upload location on another host.
    const registryOrigin = this.url(ref, '').origin;
    let url = opts.url;
    let method: Method = opts.method;
    let reauthenticated = false;
    let redirects = 0;
    let authorization = await this.auth.authorization(registry, host, opts.scopes);

    for (let attempt = 0; ; ) {
      const sameOrigin = url.origin === registryOrigin;
      const headers: Record<string, string> = { 'user-agent': this.userAgent, ...opts.headers };
      if (authorization && sameOrigin) headers.authorization = authorization;
      const body = method === opts.method ? opts.body?.() : undefined;
      if (body === undefined) delete headers['content-length'];

      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, { method, headers, body, dispatcher: this.dispatcher });
      } catch (err) {
        if (body instanceof Readable) body.destroy();
        if (opts.retry !== false && isNetworkError(err) && attempt < this.retryPolicy.retries) {
          await wait(backoffDelay(attempt++, this.retryPolicy));
          continue;
        }
        throw new RegistryError(
          `cannot reach registry ${registry} (${url.origin}): ${describeError(err)}`,
          registry,
          undefined,
          undefined,
          isNetworkError(err),
          { cause: err },
        );
      }

      // An early answer (401, 5xx) can leave a request stream half read: release its file.
      if (body instanceof Readable && !body.readableEnded) body.destroy();

      const status = res.statusCode;
      if (status === 401 && sameOrigin) {
        const challenge = res.headers['www-authenticate'];
        await res.body.dump();
        if (reauthenticated) throw await this.authFailure(ref);
        authorization = await this.auth.onUnauthorized(registry, host, opts.scopes, challenge);
        reauthenticated = true;
        continue;
      }
      if (opts.followRedirects && status >= 300 && status < 400 && status !== 304) {
        const location = headerValue(res.headers.location);
        if (location) {
          await res.body.dump();
          if (++redirects > MAX_REDIRECTS) throw new RegistryError(`too many redirects from ${registry}`, registry, status);
          url = new URL(location, url);
          if (status === 303) method = 'GET';
          continue;
        }
      }
      if (opts.retry !== false && isRetryableStatus(status) && attempt < this.retryPolicy.retries) {
        const delay = backoffDelay(attempt++, this.retryPolicy, parseRetryAfter(res.headers['retry-after']));
        await res.body.dump();
        await wait(delay);
        continue;
      }
      return res;
    }
  }

  private async authFailure(ref: ImageReference): Promise<AuthenticationError> {
    const hasCreds = await this.auth.hasCredentials(ref.registry);
    const hint = hasCreds
      ? ''
      : ` (no credentials found for ${ref.registry}; ${ref.name} may not exist or may need docker login)`;
    return new AuthenticationError(`authentication failed for ${ref.registry}: 401 Unauthorized${hint}`, ref.registry);
  }

  /** Turns an unexpected response into a RegistryError carrying the registry's own error code and message. */
  private async errorFrom(ref: ImageReference, res: Dispatcher.ResponseData, action: string): Promise<RegistryError> {
    const status = res.statusCode;
    const detail = await registryErrorDetail(res);
    const statusText = res.statusText || STATUS_CODES[status] || '';
    const text = `${action} failed: ${status} ${statusText}`.trimEnd();
    const message = detail.code || detail.message ? `${text} (${[detail.code, detail.message].filter(Boolean).join(': ')})` : text;
    if (status === 403) return new AuthenticationError(`access denied to ${ref.name}: ${message}`, ref.registry, 403);
    return new RegistryError(message, ref.registry, status, detail.code, isRetryableStatus(status));
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

function platformNotFound(ref: ImageReference, index: ImageIndex, platform: Platform): PlatformNotFoundError {
  const available = index.manifests
    .filter((d) => d.platform && !isAttestation(d))
    .map((d) => formatPlatform(normalisePlatform(d.platform as Platform)));
  return new PlatformNotFoundError(
    `no image for platform ${formatPlatform(normalisePlatform(platform))} in ${ref} (available: ${available.join(', ') || 'none'})`,
    ref.registry,
  );
}

function validateManifest(ref: ImageReference, manifest: ImageManifest): void {
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw new UnsupportedManifestError(`manifest of ${ref} lacks config or layers`, ref.registry);
  }
  assertDigest(ref, manifest.config.digest);
  for (const layer of manifest.layers) assertDigest(ref, layer.digest);
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

function parseJson<T>(bytes: Buffer, what: string, registry: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw new UnsupportedManifestError(`${what} is not valid JSON: ${(err as Error).message}`, registry);
  }
}

async function readLimited(stream: AsyncIterable<unknown>, limit: number, what: string, registry: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const buf = chunk as Buffer;
    total += buf.length;
    if (total > limit) throw new UnsupportedManifestError(`${what} is larger than ${limit} bytes`, registry);
    chunks.push(buf);
  }
  return Buffer.concat(chunks, total);
}

async function registryErrorDetail(res: Dispatcher.ResponseData): Promise<{ code?: string; message?: string }> {
  try {
    const bytes = await readLimited(res.body, MAX_ERROR_BODY_BYTES, 'error body', '');
    const json = JSON.parse(bytes.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const first = json.errors?.[0];
    return { code: first?.code, message: first?.message };
  } catch {
    res.body.destroy();
    return {};
  }
}

async function errorCode(res: Dispatcher.ResponseData): Promise<string | undefined> {
  return (await registryErrorDetail(res)).code;
}

function rangeStart(res: Dispatcher.ResponseData): number | undefined {
  const m = /^bytes (\d+)-/.exec(headerValue(res.headers['content-range']) ?? '');
  return m ? Number(m[1]) : undefined;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Adds a query parameter without re-encoding the ones already there (upload locations carry opaque state). */
function withQuery(url: URL, key: string, value: string): URL {
  const sep = url.search ? '&' : '?';
  return new URL(`${url.origin}${url.pathname}${url.search}${sep}${key}=${encodeURIComponent(value)}`);
}

function assertDigest(ref: ImageReference, digest: string): asserts digest is Digest {
  if (!DIGEST_RE.test(digest)) throw new UnsupportedManifestError(`invalid or unsupported digest "${digest}" in ${ref}`, ref.registry);
}

function sha256(bytes: Buffer): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${typeof code === 'string' && !err.message.includes(code) ? ` (${code})` : ''}${cause}`;
}

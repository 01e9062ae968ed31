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
import { HttpTransport, trustedCAs, type HttpResponse } from './http.js';
import { formatPlatform, isAttestation, normalizePlatform, platformRank, selectManifest } from '../oci/platform.js';
import { DOCKER_HUB, ImageReference, isInsecureByDefault, registryHost } from './reference.js';
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
  /**
   * Pull-through mirrors for Docker Hub, tried in order before docker.io itself (as dockerd's
   * `registry-mirrors`): `https://mirror.example.com`, `http://10.0.0.5:5000`, `127.0.0.1:5001`.
   * Only pulls use them; pushes always go to the origin.
   */
  registryMirrors?: readonly string[];
  /**
   * Verified manifests and configs already at hand (typically the content store): a digest found
   * here is not fetched again, and a tag pulled before is then resolved with a single HEAD request.
   */
  contentCache?: ContentCache;
  /** Blobs larger than this are uploaded in PATCH chunks of `chunkSize` bytes (default 32 MiB each). */
  chunkedUploadThreshold?: number;
  chunkSize?: number;
  /**
   * Extra options for the client's sockets (e.g. `lookup`, `servername`). CA certificates come
   * from SSL_CERT_FILE when set, else from the system store.
   */
  connect?: Record<string, unknown>;
  /** Environment to read SSL_CERT_FILE from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Stops the client (Ctrl-C): open connections are closed, nothing is retried or sent again. */
  signal?: AbortSignal;
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
const MAX_UPLOAD_RESUMES = 5;
const DEFAULT_CHUNK_THRESHOLD = 32 * 1024 * 1024;
const DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH';

/** Where requests for one registry go: the registry itself or a mirror of it. */
interface Endpoint {
  /** Name credentials and errors use: `docker.io`, `127.0.0.1:5000`, a mirror's host. */
  registry: string;
  /** host[:port] the API is served at. */
  host: string;
  /** `https://host` or `http://host`. */
  origin: string;
  mirror: boolean;
}

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
  /** Overrides the policy's retry count (mirrors get few: the next endpoint is the better retry). */
  retries?: number;
  /** A blob GET whose body is streamed in bulk (HttpRequest.bulk). */
  bulk?: boolean;
}

export class RegistryClient {
  private readonly http: HttpTransport;
  private readonly auth: Authenticator;
  private readonly insecure: readonly string[];
  private readonly userAgent: string;
  private readonly retryPolicy: RetryPolicy;
  private readonly mirrors: readonly Endpoint[];
  private readonly cache: ContentCache | undefined;
  private readonly chunkThreshold: number;
  private readonly chunkSize: number;
  private readonly signal: AbortSignal | undefined;
  /** Tag and digest resolutions of this client's lifetime (one build): each is asked for once. */
  private readonly resolutions = new Map<string, Promise<ResolvedImage>>();

  constructor(options: RegistryClientOptions = {}) {
    this.http = new HttpTransport({ connect: { ...trustedCAs(options.env ?? process.env), ...options.connect } });
    this.insecure = options.insecureRegistries ?? [];
    this.mirrors = (options.registryMirrors ?? []).map((m) => parseMirror(m, this.insecure));
    this.cache = options.contentCache;
    this.chunkThreshold = options.chunkedUploadThreshold ?? DEFAULT_CHUNK_THRESHOLD;
    this.chunkSize = Math.max(1, options.chunkSize ?? DEFAULT_CHUNK_SIZE);
    this.userAgent = options.userAgent ?? 'builder/0.1';
    this.retryPolicy = { ...DEFAULT_RETRY, ...options.retry };
    this.signal = options.signal;
    // Requests in flight (an upload waiting for its answer) fail at once.
    this.signal?.addEventListener('abort', () => this.http.close(), { once: true });
    this.auth = new Authenticator({
      credentials: options.credentials ?? new DockerConfigCredentialStore(),
      http: this.http,
      userAgent: this.userAgent,
    });
  }

  /** Closes pooled connections. */
  async close(): Promise<void> {
    this.http.close();
  }

  // -------------------------------------------------------------------------------------------
  // Pull

  /**
   * Resolves `ref` to the manifest and config for `platform`: an index or manifest list is
   * narrowed to the best matching entry; every document is verified against its digest.
   */
  async resolve(ref: ImageReference, platform: Platform, options: { refresh?: boolean } = {}): Promise<ResolvedImage> {
    const key = `${ref.toString()}\n${formatPlatform(normalizePlatform(platform))}`;
    let pending = options.refresh ? undefined : this.resolutions.get(key);
    if (!pending) {
      pending = (async () => this.resolveFrom(ref, await this.fetchManifest(ref), platform, undefined, 0))();
      this.resolutions.set(key, pending);
      pending.catch(() => {
        if (this.resolutions.get(key) === pending) this.resolutions.delete(key);
      });
    }
    return pending;
  }

  /**
   * Whether the registry answers /v2/ with these client's credentials, as `docker login` checks
   * them: Basic credentials are sent as they are, Bearer ones exchanged for a token. Throws
   * AuthenticationError naming the registry when they are refused.
   */
  async checkLogin(registry: string): Promise<void> {
    const ep = this.endpoint(registry);
    const res = await this.call(ep, { method: 'GET', url: new URL(`${ep.origin}/v2/`), scopes: [], followRedirects: true });
    await res.dump();
    if (res.statusCode === 200) return;
    const statusText = res.statusText || STATUS_CODES[res.statusCode] || '';
    if (res.statusCode === 403) throw new AuthenticationError(`login to ${registry} refused: 403 ${statusText}`.trimEnd(), registry, 403);
    throw new RegistryError(`login to ${registry} failed: ${res.statusCode} ${statusText}`.trimEnd(), registry, res.statusCode);
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
    const known = expected?.digest ?? ref.digest;
    if (known) {
      const cached = await this.fromCache(ref, known);
      if (cached) return cached;
    }
    const fetched = await this.onPullEndpoints(ref, async (ep) => {
      if (!known && this.cache && (await this.cache.pulledBefore?.(ref)) !== false) {
        // A tag: HEAD is enough when we already hold what it points at.
        const digest = await this.headManifest(ep, ref);
        const cached = digest && (await this.fromCache(ref, digest));
        if (cached) return cached;
      }
      // `call` retries failures before the response; this covers a connection lost mid-body.
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.fetchManifestOnce(ep, ref, expected);
        } catch (err) {
          if (!isNetworkError(err) || attempt >= this.retriesFor(ep)) throw err;
          await wait(backoffDelay(attempt, this.retryPolicy), this.signal);
        }
      }
    });
    if (this.cache) await this.cache.put(fetched.digest, fetched.bytes);
    return fetched;
  }

  /** The digest a tag points at (HEAD), or undefined when the registry does not say. */
  private async headManifest(ep: Endpoint, ref: ImageReference): Promise<Digest | undefined> {
    const res = await this.call(ep, {
      method: 'HEAD',
      url: this.url(ep, ref, `manifests/${ref.pullReference}`),
      scopes: [pullScope(ref.repository)],
      headers: { accept: MANIFEST_ACCEPT },
      followRedirects: true,
      retries: this.retriesFor(ep),
    });
    await res.dump();
    const digest = headerValue(res.headers['docker-content-digest']);
    return res.statusCode === 200 && digest && DIGEST_RE.test(digest) ? (digest as Digest) : undefined;
  }

  /** A manifest from the content cache, checked again against its digest. */
  private async fromCache(ref: ImageReference, digest: Digest): Promise<FetchedManifest | undefined> {
    const bytes = await this.cache?.get(digest);
    if (!bytes || sha256(bytes) !== digest) return undefined;
    return { digest, mediaType: manifestMediaType(ref, bytes, undefined), bytes };
  }

  private async fetchManifestOnce(ep: Endpoint, ref: ImageReference, expected?: Pick<Descriptor, 'digest' | 'size'>): Promise<FetchedManifest> {
    const res = await this.call(ep, {
      retries: this.retriesFor(ep),
      method: 'GET',
      url: this.url(ep, ref, `manifests/${ref.pullReference}`),
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
    const { ep, res } = await this.onPullEndpoints(ref, async (ep) => ({ ep, res: await this.openBlob(ep, ref, desc, 0) }));
    return this.blobStream(ep, ref, desc, res);
  }

  /** Whether the repository has the blob (HEAD). */
  async hasBlob(ref: ImageReference, digest: Digest): Promise<boolean> {
    return this.headBlob(ref, digest, [pullScope(ref.repository)]);
  }

  // -------------------------------------------------------------------------------------------
  // Push

  /**
   * Uploads a blob unless the repository already has it: optionally a cross-repo mount, else
   * POST an upload session and PUT the whole stream, or for blobs over the chunked-upload
   * threshold PATCH it in chunks, following the Location and Range each answer carries (`open`
   * is called again for each attempt and must return a fresh stream of exactly `desc.size` bytes).
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
        await wait(backoffDelay(attempt, this.retryPolicy), this.signal);
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
    const res = await this.call(this.endpoint(ref.registry), {
      method: 'PUT',
      url: this.url(this.endpoint(ref.registry), ref, `manifests/${target}`),
      scopes: [pushScope(ref.repository)],
      headers: { 'content-type': mediaType },
      body: () => bytes,
    });
    if (res.statusCode < 200 || res.statusCode >= 300) throw await this.errorFrom(ref, res, `pushing manifest to ${ref}`);
    await res.dump();
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
    const ep = this.endpoint(ref.registry);
    const res = await this.call(ep, { method: 'HEAD', url: this.url(ep, ref, `blobs/${digest}`), scopes, followRedirects: true });
    await res.dump();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw await this.errorFrom(ref, res, `checking blob ${digest} in ${ref.name}`);
  }

  private async openBlob(ep: Endpoint, ref: ImageReference, desc: Descriptor, offset: number): Promise<HttpResponse> {
    const res = await this.call(ep, {
      retries: this.retriesFor(ep),
      method: 'GET',
      url: this.url(ep, ref, `blobs/${desc.digest}`),
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
    throw await this.errorFrom(ref, res, `fetching blob ${desc.digest} from ${ref.name}`);
  }

  /**
   * The blob's bytes as one stream, resuming after dropped connections; never more than desc.size
   * bytes. Event-driven with backpressure (pause/resume) rather than async iteration, which costs
   * several times the CPU per chunk on a fast link.
   */
  private blobStream(ep: Endpoint, ref: ImageReference, desc: Descriptor, first: HttpResponse): Readable {
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
      let res = first;
      let offset = 0;
      for (let resumes = 0; ; resumes++) {
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
          if (resumes >= MAX_BLOB_RESUMES) {
            throw new RegistryError(`blob ${desc.digest} from ${ref.name} ended after ${offset} of ${desc.size} bytes`, ref.registry);
          }
        } catch (err) {
          if (stopped) return;
          const reached = (err as { offset?: unknown }).offset;
          if (typeof reached === 'number') offset = reached;
          if (!isNetworkError(err) || resumes >= MAX_BLOB_RESUMES) throw err;
          await wait(backoffDelay(resumes, this.retryPolicy), this.signal);
        }
        if (stopped) return;
        res = await this.openBlob(ep, ref, desc, offset);
      }
    };
    pump().catch((err: unknown) => out.destroy(err as Error));
    return out;
  }

  private async uploadBlob(
    ref: ImageReference,
    desc: Descriptor,
    open: () => Readable,
    scopes: readonly string[],
    mountFrom: string | undefined,
  ): Promise<void> {
    const ep = this.endpoint(ref.registry);
    const start = this.url(ep, ref, 'blobs/uploads/');
    if (mountFrom && mountFrom !== ref.repository) {
      start.searchParams.set('mount', desc.digest);
      start.searchParams.set('from', mountFrom);
    }
    const started = await this.call(ep, { method: 'POST', url: start, scopes, body: () => '', headers: { 'content-length': '0' } });
    await started.dump();
    if (started.statusCode === 201) return; // mounted from the other repository
    if (started.statusCode !== 202) throw await this.errorFrom(ref, started, `starting upload of ${desc.digest} to ${ref.name}`);
    let location = uploadLocation(ref, started, start);

    if (desc.size > this.chunkThreshold) location = await this.uploadChunks(ep, ref, desc, open, scopes, location);

    const chunked = desc.size > this.chunkThreshold;
    const res = await this.call(ep, {
      method: 'PUT',
      url: withQuery(location, 'digest', desc.digest),
      scopes,
      headers: { 'content-type': 'application/octet-stream', 'content-length': chunked ? '0' : String(desc.size) },
      body: chunked ? () => '' : open,
      retry: false,
    });
    if (res.statusCode !== 201 && res.statusCode !== 204) {
      throw await this.errorFrom(ref, res, `uploading blob ${desc.digest} to ${ref.name}`);
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
  private async uploadChunks(
    ep: Endpoint,
    ref: ImageReference,
    desc: Descriptor,
    open: () => Readable,
    scopes: readonly string[],
    initial: URL,
  ): Promise<URL> {
    let location = initial;
    let offset = 0;
    let source = new ChunkSource(open());
    try {
      for (let resumes = 0; offset < desc.size; ) {
        const length = Math.min(this.chunkSize, desc.size - offset);
        const from = offset;
        let failure: unknown;
        let used = false;
        try {
          const res = await this.call(ep, {
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
            throw await this.errorFrom(ref, res, `uploading a chunk of blob ${desc.digest} to ${ref.name}`);
          }
        } catch (err) {
          if (!(err instanceof RegistryError && err.retryable) && !isNetworkError(err)) throw err;
          failure = err;
        }
        // Resume: ask the session where it stands, then read a fresh stream up to there.
        if (resumes++ >= MAX_UPLOAD_RESUMES) throw failure;
        await wait(backoffDelay(resumes - 1, this.retryPolicy), this.signal);
        const status = await this.uploadStatus(ep, ref, desc, scopes, location);
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
  private async uploadStatus(
    ep: Endpoint,
    ref: ImageReference,
    desc: Descriptor,
    scopes: readonly string[],
    location: URL,
  ): Promise<{ location: URL; offset: number }> {
    const res = await this.call(ep, { method: 'GET', url: location, scopes });
    if (res.statusCode !== 204 && res.statusCode !== 200) {
      throw await this.errorFrom(ref, res, `checking the upload of ${desc.digest} to ${ref.name}`);
    }
    await res.dump();
    const end = rangeEnd(res);
    return { location: uploadLocation(ref, res, location), offset: end === undefined ? 0 : end + 1 };
  }

  private async fetchSmallBlob(ref: ImageReference, desc: Descriptor, limit: number): Promise<Buffer> {
    if (desc.size > limit) {
      throw new UnsupportedManifestError(`blob ${desc.digest} of ${ref} is ${desc.size} bytes, over the ${limit} byte limit`, ref.registry);
    }
    const cached = await this.cache?.get(desc.digest);
    if (cached && cached.length === desc.size && sha256(cached) === desc.digest) return cached;
    const bytes = await readLimited(await this.fetchBlob(ref, desc), limit, `blob ${desc.digest}`, ref.registry);
    const digest = sha256(bytes);
    if (digest !== desc.digest || bytes.length !== desc.size) {
      throw new ContentVerificationError(
        `blob ${desc.digest} of ${ref} does not match: got ${digest} (${bytes.length} bytes, expected ${desc.size})`,
        ref.registry,
      );
    }
    await this.cache?.put(digest, bytes);
    return bytes;
  }

  // -------------------------------------------------------------------------------------------
  // Internals: HTTP

  /** The registry itself (pushes, and pulls from anything but Docker Hub). */
  private endpoint(registry: string): Endpoint {
    const host = registryHost(registry);
    const scheme = isInsecureByDefault(host, this.insecure) || isInsecureByDefault(registry, this.insecure) ? 'http' : 'https';
    return { registry, host, origin: `${scheme}://${host}`, mirror: false };
  }

  /** Where pulls of `ref` go, in order: Docker Hub's mirrors, then the registry itself. */
  private pullEndpoints(ref: ImageReference): Endpoint[] {
    const origin = this.endpoint(ref.registry);
    return ref.registry === DOCKER_HUB && this.mirrors.length > 0 ? [...this.mirrors, origin] : [origin];
  }

  /** Runs `fn` against each pull endpoint until one succeeds; the origin's error is the one reported. */
  private async onPullEndpoints<T>(ref: ImageReference, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    const endpoints = this.pullEndpoints(ref);
    for (let i = 0; ; i++) {
      const ep = endpoints[i] as Endpoint;
      try {
        return await fn(ep);
      } catch (err) {
        // A mirror that fails in any way (down, missing the image, refusing us) is skipped.
        if (i >= endpoints.length - 1) throw err;
      }
    }
  }

  private retriesFor(ep: Endpoint): number {
    return ep.mirror ? Math.min(1, this.retryPolicy.retries) : this.retryPolicy.retries;
  }

  private url(ep: Endpoint, ref: ImageReference, path: string): URL {
    return new URL(`${ep.origin}/v2/${ref.repository}/${path}`);
  }

  /**
   * Sends one logical request: authenticates, retries transient failures and follows redirects.
   * Returns the final response whatever its status, except 401 after re-authenticating (thrown).
   */
  private async call(ep: Endpoint, opts: CallOptions): Promise<HttpResponse> {
    const registry = ep.registry;
    const host = ep.host;
    const retries = opts.retries ?? this.retryPolicy.retries;
    // Credentials go to the registry's own origin only, as in containerd: never to a redirect
    // target (blob storage) or an upload location on another host.
    const registryOrigin = ep.origin;
    let url = opts.url;
    let method: Method = opts.method;
    let reauthenticated = false;
    let redirects = 0;
    let authorization = await this.auth.authorization(registry, host, opts.scopes);

    for (let attempt = 0; ; ) {
      this.signal?.throwIfAborted();
      const sameOrigin = url.origin === registryOrigin;
      const headers: Record<string, string> = { 'user-agent': this.userAgent, ...opts.headers };
      if (authorization && sameOrigin) headers.authorization = authorization;
      const body = method === opts.method ? opts.body?.() : undefined;
      if (body === undefined) delete headers['content-length'];

      let res: HttpResponse;
      try {
        res = await this.http.request(url, { method, headers, body, bulk: opts.bulk });
      } catch (err) {
        if (body instanceof Readable) body.destroy();
        this.signal?.throwIfAborted();
        if (opts.retry !== false && isNetworkError(err) && attempt < retries) {
          await wait(backoffDelay(attempt++, this.retryPolicy), this.signal);
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
        const challenge = res.headersDistinct['www-authenticate'];
        await res.dump();
        if (reauthenticated) throw await this.authFailure(registry);
        authorization = await this.auth.onUnauthorized(registry, host, opts.scopes, challenge);
        reauthenticated = true;
        continue;
      }
      if (opts.followRedirects && status >= 300 && status < 400 && status !== 304) {
        const location = headerValue(res.headers.location);
        if (location) {
          await res.dump();
          if (++redirects > MAX_REDIRECTS) throw new RegistryError(`too many redirects from ${registry}`, registry, status);
          url = new URL(location, url);
          if (status === 303) method = 'GET';
          continue;
        }
      }
      if (opts.retry !== false && isRetryableStatus(status) && attempt < retries) {
        const delay = backoffDelay(attempt++, this.retryPolicy, parseRetryAfter(res.headers['retry-after']));
        await res.dump();
        await wait(delay, this.signal);
        continue;
      }
      return res;
    }
  }

  private async authFailure(registry: string): Promise<AuthenticationError> {
    const hasCreds = await this.auth.hasCredentials(registry);
    const hint = hasCreds ? '' : ` (no credentials found for ${registry}; the repository may not exist or may need builder login)`;
    return new AuthenticationError(`authentication failed for ${registry}: 401 Unauthorized${hint}`, registry);
  }

  /** Turns an unexpected response into a RegistryError carrying the registry's own error code and message. */
  private async errorFrom(ref: ImageReference, res: HttpResponse, action: string): Promise<RegistryError> {
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
    .map((d) => formatPlatform(normalizePlatform(d.platform as Platform)));
  return new PlatformNotFoundError(
    `no image for platform ${formatPlatform(normalizePlatform(platform))} in ${ref} (available: ${available.join(', ') || 'none'})`,
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

async function registryErrorDetail(res: HttpResponse): Promise<{ code?: string; message?: string }> {
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

async function errorCode(res: HttpResponse): Promise<string | undefined> {
  return (await registryErrorDetail(res)).code;
}

function rangeStart(res: HttpResponse): number | undefined {
  const m = /^bytes (\d+)-/.exec(headerValue(res.headers['content-range']) ?? '');
  return m ? Number(m[1]) : undefined;
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

/** `https://mirror.example.com`, `http://10.0.0.5:5000/`, `127.0.0.1:5001` → an endpoint. */
function parseMirror(text: string, insecure: readonly string[]): Endpoint {
  const m = /^(?:(https?):\/\/)?([^/]+)\/*$/i.exec(text.trim());
  if (!m) throw new Error(`invalid registry mirror "${text}": expected [http[s]://]host[:port]`);
  const host = (m[2] as string).toLowerCase();
  const scheme = m[1]?.toLowerCase() ?? (isInsecureByDefault(host, insecure) ? 'http' : 'https');
  return { registry: host, host, origin: `${scheme}://${host}`, mirror: true };
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

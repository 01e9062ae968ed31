// The OCI distribution client: resolve a reference to a platform's manifest and config, stream
// blobs out, push blobs and manifests in. One instance per build, so tokens and connections are
// shared by every pull and push of that build.
//
// A facade over the modules that do the work, split as go-containerregistry splits them:
//   resolve.ts      reference → platform manifest + config (index walk)
//   manifest.ts     manifest and index fetch, verified, through the content cache
//   blob-reader.ts  blob HEAD and the resumable blob stream
//   upload.ts       blob push (existence check, cross-repo mount, chunked upload), manifest push
//   request.ts      `call`: auth, retries, redirects; endpoints.ts: the registry and its mirrors

import type { Readable } from 'node:stream';
import { formatPlatform, normalizePlatform } from '../oci/platform.js';
import type { Descriptor, Digest, Platform } from '../oci/types.js';
import { Authenticator, pullScope, type CredentialStore } from './auth.js';
import { DockerConfigCredentialStore } from './docker-config.js';
import { fetchBlob, headBlob } from './blob-reader.js';
import { Endpoints } from './endpoints.js';
import { HttpTransport, trustedCAs } from './http.js';
import { fetchManifest, type ContentCache, type FetchedManifest } from './manifest.js';
import type { ImageReference } from './reference.js';
import { Requester } from './request.js';
import { resolveImage, type ResolvedImage } from './resolve.js';
import { DEFAULT_RETRY, type RetryPolicy } from './retry.js';
import { pushBlob, pushManifest, type Chunking, type PushBlobOptions } from './upload.js';

export { MANIFEST_ACCEPT, type ContentCache, type FetchedManifest } from './manifest.js';
export type { ResolvedImage } from './resolve.js';
export type { PushBlobOptions } from './upload.js';

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

const DEFAULT_CHUNK_THRESHOLD = 32 * 1024 * 1024;
const DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024;

export class RegistryClient {
  private readonly http: HttpTransport;
  private readonly requests: Requester;
  private readonly cache: ContentCache | undefined;
  private readonly chunking: Chunking;
  /** Tag and digest resolutions of this client's lifetime (one build): each is asked for once. */
  private readonly resolutions = new Map<string, Promise<ResolvedImage>>();

  constructor(options: RegistryClientOptions = {}) {
    this.http = new HttpTransport({ connect: { ...trustedCAs(options.env ?? process.env), ...options.connect } });
    this.cache = options.contentCache;
    this.chunking = {
      threshold: options.chunkedUploadThreshold ?? DEFAULT_CHUNK_THRESHOLD,
      size: Math.max(1, options.chunkSize ?? DEFAULT_CHUNK_SIZE),
    };
    const userAgent = options.userAgent ?? 'builder/0.1';
    const signal = options.signal;
    // Requests in flight (an upload waiting for its answer) fail at once.
    signal?.addEventListener('abort', () => this.http.close(), { once: true });
    this.requests = new Requester({
      http: this.http,
      auth: new Authenticator({ credentials: options.credentials ?? new DockerConfigCredentialStore(), http: this.http, userAgent }),
      endpoints: new Endpoints(options.insecureRegistries ?? [], options.registryMirrors ?? []),
      userAgent,
      retry: { ...DEFAULT_RETRY, ...options.retry },
      signal,
    });
  }

  /** Closes pooled connections. */
  async close(): Promise<void> {
    this.http.close();
  }

  /**
   * Resolves `ref` to the manifest and config for `platform`: an index or manifest list is
   * narrowed to the best matching entry; every document is verified against its digest.
   */
  async resolve(ref: ImageReference, platform: Platform, options: { refresh?: boolean } = {}): Promise<ResolvedImage> {
    const key = `${ref.toString()}\n${formatPlatform(normalizePlatform(platform))}`;
    let pending = options.refresh ? undefined : this.resolutions.get(key);
    if (!pending) {
      pending = resolveImage(this.requests, this.cache, ref, platform);
      this.resolutions.set(key, pending);
      pending.catch(() => {
        if (this.resolutions.get(key) === pending) this.resolutions.delete(key);
      });
    }
    return pending;
  }

  /**
   * Whether the registry answers /v2/ with these client's credentials, as `docker login` checks
   * them. Throws AuthenticationError naming the registry when they are refused.
   */
  async checkLogin(registry: string): Promise<void> {
    return this.requests.checkLogin(registry);
  }

  /**
   * Fetches the manifest or index `ref` names (by digest if it has one, else by tag), verified
   * against the digest asked for, else against Docker-Content-Digest when the registry sends it.
   */
  async fetchManifest(ref: ImageReference, expected?: Pick<Descriptor, 'digest' | 'size'>): Promise<FetchedManifest> {
    return fetchManifest(this.requests, this.cache, ref, expected);
  }

  /**
   * A stream of the blob's bytes (redirects followed, dropped connections resumed). The caller
   * verifies digest and size, typically by piping into ContentStore.ingest.
   */
  async fetchBlob(ref: ImageReference, desc: Descriptor): Promise<Readable> {
    return fetchBlob(this.requests, ref, desc);
  }

  /** Whether the repository has the blob (HEAD). */
  async hasBlob(ref: ImageReference, digest: Digest): Promise<boolean> {
    return headBlob(this.requests, ref, digest, [pullScope(ref.repository)]);
  }

  /**
   * Uploads a blob unless the repository already has it (see upload.ts); `open` is called again
   * for each attempt and must return a fresh stream of exactly `desc.size` bytes.
   */
  async pushBlob(ref: ImageReference, desc: Descriptor, open: () => Readable, options: PushBlobOptions = {}): Promise<void> {
    return pushBlob(this.requests, this.chunking, ref, desc, open, options);
  }

  /**
   * Puts a manifest or index under `ref`'s tag (or digest when it has no tag). Returns its digest;
   * a digest in `ref` must match the bytes.
   */
  async pushManifest(ref: ImageReference, mediaType: string, bytes: Buffer): Promise<Digest> {
    return pushManifest(this.requests, ref, mediaType, bytes);
  }
}

// The request layer under every registry operation. `call` sends one logical request and owns
// the cross-cutting rules, as go-containerregistry stacks them in its transport:
//   - Authorization from the Authenticator, with one re-authentication on 401;
//   - retries with backoff + jitter on connection errors, 429 and 5xx (Retry-After honoured);
//   - redirects followed by hand, dropping credentials when they leave the registry's origin.
// The scheme (HTTP for loopback and insecure registries) comes with the Endpoint.

import { STATUS_CODES } from 'node:http';
import { Readable } from 'node:stream';
import type { Authenticator } from './auth.js';
import type { Endpoint, Endpoints } from './endpoints.js';
import { AuthenticationError, RegistryError, UnsupportedManifestError } from './errors.js';
import type { HttpResponse, HttpTransport } from './http.js';
import type { ImageReference } from './reference.js';
import { Retries, isNetworkError, isRetryableStatus, parseRetryAfter, type RetryPolicy } from './retry.js';

const MAX_ERROR_BODY_BYTES = 64 * 1024;
const MAX_REDIRECTS = 10;

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH';

export interface CallOptions {
  method: Method;
  url: URL;
  scopes: readonly string[];
  headers?: Record<string, string>;
  /** Called once per attempt: a retried request needs a fresh body stream. */
  body?: () => string | Buffer | Readable;
  followRedirects?: boolean;
  /** False for requests that cannot simply be repeated (a blob PUT into an upload session). */
  retry?: boolean;
  /** A blob GET whose body is streamed in bulk (HttpRequest.bulk). */
  bulk?: boolean;
}

export interface RequesterOptions {
  http: HttpTransport;
  auth: Authenticator;
  endpoints: Endpoints;
  userAgent: string;
  retry: RetryPolicy;
  signal?: AbortSignal | undefined;
}

/** Sends a client's requests; shared by its pulls and pushes, so tokens and connections are too. */
export class Requester {
  readonly endpoints: Endpoints;
  private readonly http: HttpTransport;
  private readonly auth: Authenticator;
  private readonly userAgent: string;
  private readonly policy: RetryPolicy;
  private readonly signal: AbortSignal | undefined;

  constructor(options: RequesterOptions) {
    this.http = options.http;
    this.auth = options.auth;
    this.endpoints = options.endpoints;
    this.userAgent = options.userAgent;
    this.policy = options.retry;
    this.signal = options.signal;
  }

  /** A retry budget for one operation: the policy's count, or `limit`. */
  retries(limit = this.policy.retries): Retries {
    return new Retries(this.policy, { retries: limit, signal: this.signal });
  }

  /** The budget for requests to `ep`: mirrors get few retries, the next endpoint being the better one. */
  retriesFor(ep: Endpoint): Retries {
    return this.retries(ep.mirror ? Math.min(1, this.policy.retries) : this.policy.retries);
  }

  /**
   * Sends one logical request: authenticates, retries transient failures and follows redirects.
   * Returns the final response whatever its status, except 401 after re-authenticating (thrown).
   */
  async call(ep: Endpoint, opts: CallOptions): Promise<HttpResponse> {
    const { registry, host } = ep;
    const retries = this.retriesFor(ep);
    // Credentials go to the registry's own origin only, as in containerd: never to a redirect
    // target (blob storage) or an upload location on another host.
    const registryOrigin = ep.origin;
    let url = opts.url;
    let method: Method = opts.method;
    let reauthenticated = false;
    let redirects = 0;
    let authorization = await this.auth.authorization(registry, host, opts.scopes);

    for (;;) {
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
        if (opts.retry !== false && isNetworkError(err) && (await retries.next())) continue;
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
      if (opts.retry !== false && isRetryableStatus(status) && retries.left) {
        const retryAfter = parseRetryAfter(res.headers['retry-after']);
        await res.dump();
        await retries.next(retryAfter);
        continue;
      }
      return res;
    }
  }

  /**
   * Whether the registry answers /v2/ with these credentials, as `docker login` checks them:
   * Basic credentials are sent as they are, Bearer ones exchanged for a token. Throws
   * AuthenticationError naming the registry when they are refused.
   */
  async checkLogin(registry: string): Promise<void> {
    const ep = this.endpoints.origin(registry);
    const res = await this.call(ep, { method: 'GET', url: new URL(`${ep.origin}/v2/`), scopes: [], followRedirects: true });
    await res.dump();
    if (res.statusCode === 200) return;
    const statusText = res.statusText || STATUS_CODES[res.statusCode] || '';
    if (res.statusCode === 403) throw new AuthenticationError(`login to ${registry} refused: 403 ${statusText}`.trimEnd(), registry, 403);
    throw new RegistryError(`login to ${registry} failed: ${res.statusCode} ${statusText}`.trimEnd(), registry, res.statusCode);
  }

  private async authFailure(registry: string): Promise<AuthenticationError> {
    const hasCreds = await this.auth.hasCredentials(registry);
    const hint = hasCreds ? '' : ` (no credentials found for ${registry}; the repository may not exist or may need builder login)`;
    return new AuthenticationError(`authentication failed for ${registry}: 401 Unauthorized${hint}`, registry);
  }
}

/** Turns an unexpected response into a RegistryError carrying the registry's own error code and message. */
export async function errorFrom(ref: ImageReference, res: HttpResponse, action: string): Promise<RegistryError> {
  const status = res.statusCode;
  const detail = await registryErrorDetail(res);
  const statusText = res.statusText || STATUS_CODES[status] || '';
  const text = `${action} failed: ${status} ${statusText}`.trimEnd();
  const message = detail.code || detail.message ? `${text} (${[detail.code, detail.message].filter(Boolean).join(': ')})` : text;
  if (status === 403) return new AuthenticationError(`access denied to ${ref.name}: ${message}`, ref.registry, 403);
  return new RegistryError(message, ref.registry, status, detail.code, isRetryableStatus(status));
}

/** The registry's error code in a response body (MANIFEST_UNKNOWN, BLOB_UNKNOWN, …). */
export async function errorCode(res: HttpResponse): Promise<string | undefined> {
  return (await registryErrorDetail(res)).code;
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

/** A whole small body (manifest, config, error), refused past `limit` bytes. */
export async function readLimited(stream: AsyncIterable<unknown>, limit: number, what: string, registry: string): Promise<Buffer> {
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

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${typeof code === 'string' && !err.message.includes(code) ? ` (${code})` : ''}${cause}`;
}

// Registry authentication: the WWW-Authenticate challenge flow of the distribution spec.
//
//   1. A request without credentials gets 401 + `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
//      (or `Basic realm=…`).
//   2. Bearer: GET realm?service=…&scope=repository:NAME:pull[,push] (with Basic credentials when we
//      have some, anonymously otherwise) → {token | access_token, expires_in}. Basic: send credentials.
//   3. Later requests to the same host send the token up front; tokens are cached per
//      (host, scopes) until they expire.
//
// Credentials come from a CredentialStore; the default reads docker's config.json (auths,
// credsStore, credHelpers: docker-config.ts). Secrets are never logged and never put into error messages.

import { AuthenticationError, RegistryError } from './errors.js';
import type { HttpResponse, HttpTransport } from './http.js';
import { normaliseRegistry } from './reference.js';
import { DEFAULT_RETRY, Retries, isNetworkError, isRetryableStatus, parseRetryAfter } from './retry.js';

export interface Credentials {
  username: string;
  password: string;
  /** An OAuth2 refresh token (docker config `identitytoken`), used instead of the password for Bearer realms. */
  identityToken?: string;
}

/** Where credentials come from. `registry` is a normalised registry name: `docker.io`, `127.0.0.1:5000`. */
export interface CredentialStore {
  get(registry: string): Promise<Credentials | undefined>;
}

export interface Challenge {
  scheme: 'bearer' | 'basic';
  params: Record<string, string>;
}

/** The server name docker uses for Docker Hub in config.json and with credential helpers. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';

// ---------------------------------------------------------------------------------------------
// Challenges

/**
 * Parses a WWW-Authenticate header into its challenges, e.g.
 * `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`.
 * Unknown schemes are skipped.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (!header) return [];
  const text = Array.isArray(header) ? header.join(', ') : header;
  const challenges: Challenge[] = [];
  let current: Challenge | undefined;
  let i = 0;
  const skipSpace = (): void => {
    while (i < text.length && /[\s,]/.test(text[i] as string)) i++;
  };
  while (i < text.length) {
    skipSpace();
    const tokenMatch = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/.exec(text.slice(i));
    if (!tokenMatch) break;
    const token = tokenMatch[0];
    i += token.length;
    while (i < text.length && text[i] === ' ') i++;
    if (text[i] === '=') {
      // auth-param of the current challenge
      i++;
      while (text[i] === ' ') i++;
      let value: string;
      if (text[i] === '"') {
        value = '';
        i++;
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\' && i + 1 < text.length) i++;
          value += text[i];
          i++;
        }
        i++;
      } else {
        const m = /^[^\s,]*/.exec(text.slice(i));
        value = m ? m[0] : '';
        i += value.length;
      }
      if (current) current.params[token.toLowerCase()] = value;
    } else {
      const scheme = token.toLowerCase();
      current = scheme === 'bearer' || scheme === 'basic' ? { scheme, params: {} } : undefined;
      if (current) challenges.push(current);
    }
  }
  return challenges;
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

// ---------------------------------------------------------------------------------------------
// Credential stores

/** Fixed credentials, keyed by registry name (any spelling of Docker Hub works). */
export class StaticCredentialStore implements CredentialStore {
  private readonly byRegistry = new Map<string, Credentials>();

  constructor(entries: Record<string, Credentials> = {}) {
    for (const [key, creds] of Object.entries(entries)) this.byRegistry.set(normaliseAuthKey(key), creds);
  }

  async get(registry: string): Promise<Credentials | undefined> {
    return this.byRegistry.get(normaliseAuthKey(registry));
  }
}

/** `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/v2/` → `host:5000`. */
export function normaliseAuthKey(key: string): string {
  const bare = key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
  return normaliseRegistry(bare);
}

// ---------------------------------------------------------------------------------------------
// The authenticator: turns challenges into Authorization headers

/** A token fetched this recently is reused for a 401 rather than fetched again. */
const FRESH_TOKEN_MS = 2_000;

interface CachedToken {
  token: string;
  expiresAt: number;
}

export interface AuthenticatorOptions {
  credentials: CredentialStore;
  http: HttpTransport;
  userAgent: string;
  /** Client id sent with OAuth2 refresh-token requests. */
  clientId?: string;
}

/** Keeps challenges, credentials and tokens per registry; one instance per RegistryClient. */
export class Authenticator {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, { token: Promise<CachedToken>; since: number }>();
  private readonly creds = new Map<string, Promise<Credentials | undefined>>();

  constructor(private readonly options: AuthenticatorOptions) {}

  /** Whether credentials are configured for `registry` (used to word errors). */
  async hasCredentials(registry: string): Promise<boolean> {
    return (await this.credentialsFor(registry)) !== undefined;
  }

  /**
   * The Authorization header for a request, if the host challenged us before; undefined when
   * we do not know yet whether it wants authentication.
   */
  async authorization(registry: string, host: string, scopes: readonly string[]): Promise<string | undefined> {
    const challenge = this.challenges.get(host);
    if (!challenge) return undefined;
    return this.headerFor(registry, host, challenge, scopes, false);
  }

  /**
   * Handles a 401: remembers the challenge and returns a fresh Authorization header
   * (a new token for Bearer). Throws AuthenticationError when the challenge cannot be met.
   */
  async onUnauthorized(
    registry: string,
    host: string,
    scopes: readonly string[],
    wwwAuthenticate: string | string[] | undefined,
  ): Promise<string> {
    const challenges = parseChallenges(wwwAuthenticate);
    const challenge = challenges.find((c) => c.scheme === 'bearer' && c.params.realm) ?? challenges.find((c) => c.scheme === 'basic');
    if (!challenge) {
      throw new AuthenticationError(`authentication failed for ${registry}: 401 Unauthorized (no usable WWW-Authenticate challenge)`, registry);
    }
    this.challenges.set(host, challenge);
    const header = await this.headerFor(registry, host, challenge, scopes, true);
    if (!header) {
      throw new AuthenticationError(
        `authentication required for ${registry}: 401 Unauthorized (no credentials found; add them to docker's config.json, e.g. with docker login ${registry})`,
        registry,
      );
    }
    return header;
  }

  private async headerFor(
    registry: string,
    host: string,
    challenge: Challenge,
    scopes: readonly string[],
    refresh: boolean,
  ): Promise<string | undefined> {
    const creds = await this.credentialsFor(registry);
    if (challenge.scheme === 'basic') {
      return creds ? basicHeader(creds) : undefined;
    }
    // Cached under the caller's scopes so later requests find it; fetched with the challenge's too.
    const key = `${host}\n${[...scopes].sort().join(' ')}`;
    const cached = this.tokens.get(key);
    // Parallel requests that all got a 401 share one fresh token instead of fetching one each.
    if (cached && (!refresh || Date.now() - cached.since < FRESH_TOKEN_MS)) {
      const token = await cached.token.catch(() => undefined);
      if (token && token.expiresAt > Date.now()) return `Bearer ${token.token}`;
    }
    const challengeScopes = challenge.params.scope ? challenge.params.scope.split(' ') : [];
    const allScopes = [...new Set([...scopes, ...challengeScopes])].sort();
    const pending = this.fetchToken(registry, challenge, allScopes, creds);
    const entry = { token: pending, since: Date.now() };
    this.tokens.set(key, entry);
    pending.catch(() => {
      if (this.tokens.get(key) === entry) this.tokens.delete(key);
    });
    return `Bearer ${(await pending).token}`;
  }

  private credentialsFor(registry: string): Promise<Credentials | undefined> {
    let creds = this.creds.get(registry);
    if (!creds) {
      creds = this.options.credentials.get(registry);
      this.creds.set(registry, creds);
    }
    return creds;
  }

  private async fetchToken(
    registry: string,
    challenge: Challenge,
    scopes: readonly string[],
    creds: Credentials | undefined,
  ): Promise<CachedToken> {
    const realm = challenge.params.realm;
    if (!realm) throw new AuthenticationError(`authentication failed for ${registry}: Bearer challenge without realm`, registry);
    const service = challenge.params.service;
    if (creds?.identityToken) {
      const res = await this.tokenRequest(registry, realm, 'POST', creds, (url) => {
        const form = new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: creds.identityToken ?? '',
          client_id: this.options.clientId ?? 'builder',
          ...(service ? { service } : {}),
          ...(scopes.length ? { scope: scopes.join(' ') } : {}),
        });
        return { url, body: form.toString() };
      });
      if (res) return res;
    }
    const tokens = await this.tokenRequest(registry, realm, 'GET', creds, (url) => {
      if (service) url.searchParams.set('service', service);
      for (const scope of scopes) url.searchParams.append('scope', scope);
      return { url };
    });
    if (!tokens) throw new AuthenticationError(`authentication failed for ${registry}: token endpoint not found`, registry, 404);
    return tokens;
  }

  /** One token request with retries for transient errors; undefined on 404/405 (to fall back). */
  private async tokenRequest(
    registry: string,
    realm: string,
    method: 'GET' | 'POST',
    creds: Credentials | undefined,
    build: (url: URL) => { url: URL; body?: string },
  ): Promise<CachedToken | undefined> {
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      throw new AuthenticationError(`authentication failed for ${registry}: invalid token realm "${realm}"`, registry);
    }
    const { url, body } = build(realmUrl);
    const headers: Record<string, string> = { 'user-agent': this.options.userAgent, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    else if (creds && (creds.username || creds.password)) headers.authorization = basicHeader(creds);

    const retries = new Retries(DEFAULT_RETRY);
    for (;;) {
      let res: HttpResponse;
      try {
        res = await this.options.http.request(url, { method, headers, body });
      } catch (err) {
        if (isNetworkError(err) && (await retries.next())) continue;
        throw new RegistryError(`cannot reach token server ${url.origin} for ${registry}: ${(err as Error).message}`, registry, undefined, undefined, true, { cause: err });
      }
      const status = res.statusCode;
      if (status === 200) return parseTokenResponse(registry, await res.text());
      await res.dump();
      if (isRetryableStatus(status) && (await retries.next(parseRetryAfter(res.headers['retry-after'])))) continue;
      if (method === 'POST' && (status === 404 || status === 405)) return undefined;
      if (status === 401 || status === 403) {
        throw new AuthenticationError(
          `authentication failed for ${registry}: ${status} ${status === 401 ? 'Unauthorized' : 'Forbidden'}${creds ? '' : ' (no credentials found)'}`,
          registry,
          status,
        );
      }
      throw new RegistryError(`token request for ${registry} failed: ${status}`, registry, status);
    }
  }
}

function parseTokenResponse(registry: string, text: string): CachedToken {
  let json: { token?: string; access_token?: string; expires_in?: number };
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    throw new AuthenticationError(`authentication failed for ${registry}: token endpoint returned invalid JSON`, registry);
  }
  const token = json.token || json.access_token;
  if (!token) throw new AuthenticationError(`authentication failed for ${registry}: token endpoint returned no token`, registry);
  // The spec's default lifetime is 60 s; renew a little early so a token never expires in flight.
  const lifetime = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 60;
  return { token, expiresAt: Date.now() + Math.max(lifetime - 10, lifetime / 2) * 1000 };
}

function basicHeader(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
}

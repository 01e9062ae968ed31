// Image references with Docker's normalisation rules (github.com/distribution/reference):
//   busybox                      → docker.io/library/busybox:latest
//   user/app:1.2                 → docker.io/user/app:1.2
//   127.0.0.1:5000/user/app@sha… → 127.0.0.1:5000/user/app@sha256:…
// A first path component is a registry only if it contains `.` or `:` or is `localhost`;
// otherwise the name lives on Docker Hub.

import { isSha256Digest } from '../oci/digest.js';
import type { Digest } from '../oci/types.js';

export const DOCKER_HUB = 'docker.io';
/** The host that actually serves Docker Hub's registry API. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const DOCKER_HUB_ALIASES = new Set([DOCKER_HUB, 'index.docker.io', DOCKER_HUB_API_HOST]);
const DEFAULT_TAG = 'latest';

// The grammar of distribution/reference, one piece per constant.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_LABEL = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_LABEL}(?:\\.${DOMAIN_LABEL})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const ANY_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const MAX_NAME_LENGTH = 255;

export class InvalidReferenceError extends Error {
  constructor(
    readonly reference: string,
    readonly reason: string,
  ) {
    super(`invalid reference "${reference}": ${reason}`);
    this.name = 'InvalidReferenceError';
  }
}

export class ImageReference {
  /** Registry name as users write it (`docker.io`, `127.0.0.1:5000`); see registryHost() for the API host. */
  readonly registry: string;
  /** Full repository path inside the registry (`library/busybox`). */
  readonly repository: string;
  readonly tag: string | undefined;
  /** When set, pulling uses the digest; the tag is kept for display only. */
  readonly digest: Digest | undefined;

  constructor(parts: { registry: string; repository: string; tag?: string | undefined; digest?: Digest | undefined }) {
    this.registry = parts.registry;
    this.repository = parts.repository;
    this.tag = parts.tag;
    this.digest = parts.digest;
  }

  static parse(text: string): ImageReference {
    return parseReference(text);
  }

  /** `registry/repository` without tag or digest. */
  get name(): string {
    return `${this.registry}/${this.repository}`;
  }

  /** The name as Docker prints it: `busybox`, `user/app`, `127.0.0.1:5000/app`. */
  get familiarName(): string {
    if (this.registry !== DOCKER_HUB) return this.name;
    return this.repository.startsWith('library/') && this.repository.split('/').length === 2
      ? this.repository.slice('library/'.length)
      : this.repository;
  }

  /** The familiar name with tag and digest: `busybox:latest`. */
  get familiarString(): string {
    return this.familiarName + this.suffix();
  }

  /** What to ask the registry for: the digest if known, else the tag. */
  get pullReference(): string {
    return this.digest ?? this.tag ?? DEFAULT_TAG;
  }

  withDigest(digest: Digest): ImageReference {
    return new ImageReference({ registry: this.registry, repository: this.repository, tag: this.tag, digest });
  }

  withTag(tag: string): ImageReference {
    assertTag(tag, tag);
    return new ImageReference({ registry: this.registry, repository: this.repository, tag });
  }

  withRepository(repository: string): ImageReference {
    assertRepository(repository, repository);
    return new ImageReference({ registry: this.registry, repository, tag: this.tag, digest: this.digest });
  }

  /** Canonical form: `docker.io/library/busybox:latest`, `…@sha256:…`. */
  toString(): string {
    return this.name + this.suffix();
  }

  private suffix(): string {
    return (this.tag ? `:${this.tag}` : '') + (this.digest ? `@${this.digest}` : '');
  }
}

/**
 * Parses and normalises a reference. A reference with neither tag nor digest gets the tag `latest`.
 * Throws InvalidReferenceError naming what is wrong.
 */
export function parseReference(text: string): ImageReference {
  if (text.length === 0) throw new InvalidReferenceError(text, 'empty reference');
  let rest = text;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = parseDigest(text, rest.slice(at + 1));
    rest = rest.slice(0, at);
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    assertTag(text, tag);
  }

  if (rest.length > MAX_NAME_LENGTH) {
    throw new InvalidReferenceError(text, `repository name must not be longer than ${MAX_NAME_LENGTH} characters`);
  }
  const { registry, repository } = splitDomain(text, rest);
  if (!tag && !digest) tag = DEFAULT_TAG;
  return new ImageReference({ registry, repository, tag, digest });
}

/** The host that serves the registry API for a registry name (`docker.io` → `registry-1.docker.io`). */
export function registryHost(registry: string): string {
  return DOCKER_HUB_ALIASES.has(registry) ? DOCKER_HUB_API_HOST : registry;
}

/** Maps every spelling of Docker Hub to `docker.io`; other names are returned unchanged. */
export function normaliseRegistry(registry: string): string {
  return DOCKER_HUB_ALIASES.has(registry.toLowerCase()) ? DOCKER_HUB : registry;
}

/**
 * Whether a registry host is spoken to over plain HTTP: loopback registries (localhost,
 * 127.0.0.0/8, ::1) always, plus any host in `insecureRegistries` (with or without its port).
 */
export function isInsecureByDefault(host: string, insecureRegistries: Iterable<string> = []): boolean {
  const hostname = stripPort(host).toLowerCase();
  if (hostname === 'localhost' || hostname === '::1' || /^127(?:\.\d{1,3}){3}$/.test(hostname)) return true;
  for (const entry of insecureRegistries) {
    const e = entry.replace(/^https?:\/\//, '').replace(/\/+$/, '').toLowerCase();
    if (e === host.toLowerCase() || e === hostname) return true;
  }
  return false;
}

function stripPort(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon >= 0 && host.indexOf(':') === colon ? host.slice(0, colon) : host;
}

function splitDomain(text: string, name: string): { registry: string; repository: string } {
  const slash = name.indexOf('/');
  const first = slash >= 0 ? name.slice(0, slash) : '';
  let registry = DOCKER_HUB;
  let repository = name;
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    if (!DOMAIN.test(first)) throw new InvalidReferenceError(text, `invalid registry "${first}"`);
    registry = normaliseRegistry(first);
    repository = name.slice(slash + 1);
  }
  assertRepository(text, repository);
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  return { registry, repository };
}

function assertRepository(text: string, repository: string): void {
  if (repository.length === 0) throw new InvalidReferenceError(text, 'repository name is empty');
  if (repository !== repository.toLowerCase()) {
    throw new InvalidReferenceError(text, `repository name "${repository}" must be lowercase`);
  }
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      throw new InvalidReferenceError(
        text,
        component.length === 0
          ? 'repository name has an empty path component'
          : `invalid repository path component "${component}" (allowed: a-z, 0-9 and single separators . _ __ -)`,
      );
    }
  }
}

function assertTag(text: string, tag: string): void {
  if (tag.length > 128) throw new InvalidReferenceError(text, `tag is longer than 128 characters`);
  if (!TAG.test(tag)) {
    throw new InvalidReferenceError(text, `invalid tag "${tag}" (allowed: A-Z a-z 0-9 _ . -, not starting with . or -)`);
  }
}

function parseDigest(text: string, value: string): Digest {
  if (isSha256Digest(value)) return value;
  if (ANY_DIGEST.test(value) && !value.startsWith('sha256:')) {
    throw new InvalidReferenceError(text, `unsupported digest algorithm in "${value}" (only sha256 is supported)`);
  }
  throw new InvalidReferenceError(text, `invalid digest "${value}" (expected sha256: followed by 64 lowercase hex digits)`);
}

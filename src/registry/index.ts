// The registry folder: talking to OCI distribution registries. It owns references (and Docker
// Hub's normalisation), authentication (challenges, tokens, docker's config.json and credential
// helpers), resolving an image for a platform, verified manifest and blob reads, pushes with
// existence checks, cross-repo mounts and chunked uploads, mirrors, and the one retry policy.
// It must not know the solver, the cache's layout or Dockerfiles: callers hand it references,
// descriptors and streams, and get bytes and descriptors back. This file is its public API.

export {
  DOCKER_HUB,
  DOCKER_HUB_API_HOST,
  ImageReference,
  InvalidReferenceError,
  isInsecureByDefault,
  normaliseRegistry,
  parseReference,
  registryHost,
} from './reference.js';
export {
  Authenticator,
  DOCKER_HUB_AUTH_KEY,
  StaticCredentialStore,
  normaliseAuthKey,
  parseChallenges,
  pullScope,
  pushScope,
  type AuthenticatorOptions,
  type Challenge,
  type CredentialStore,
  type Credentials,
} from './auth.js';
export { BlobSources } from './blob-sources.js';
export { runCredentialHelper } from './credential-helper.js';
export {
  DockerConfigCredentialStore,
  dockerConfigPath,
  loginServer,
  removeCredentials,
  saveCredentials,
  type DockerConfigOptions,
  type StoredWhere,
} from './docker-config.js';
export {
  MANIFEST_ACCEPT,
  RegistryClient,
  type ContentCache,
  type FetchedManifest,
  type PushBlobOptions,
  type RegistryClientOptions,
  type ResolvedImage,
} from './client.js';
export {
  AuthenticationError,
  ContentVerificationError,
  NotFoundError,
  PlatformNotFoundError,
  RegistryError,
  UnsupportedManifestError,
} from './errors.js';
export { DEFAULT_RETRY, type RetryPolicy } from './retry.js';

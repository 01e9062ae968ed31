// Public API of the registry client: references, authentication, pull and push.

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
  DockerConfigCredentialStore,
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
export { dockerConfigPath, loginServer, removeCredentials, saveCredentials, type DockerConfigOptions, type StoredWhere } from './docker-config.js';
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

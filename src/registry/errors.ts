// Errors the registry client throws. Messages name the registry or reference so a user can tell
// which of several images in a build failed; they never contain credentials or tokens.

/** Any failure talking to a registry. `retryable` marks transient ones (connection, 429, 5xx). */
export class RegistryError extends Error {
  constructor(
    message: string,
    readonly registry: string,
    readonly status?: number,
    /** The registry's error code, e.g. MANIFEST_UNKNOWN, BLOB_UPLOAD_UNKNOWN. */
    readonly code?: string,
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RegistryError';
  }
}

/** 401 after authenticating, or credentials refused by the token endpoint. */
export class AuthenticationError extends RegistryError {
  constructor(message: string, registry: string, status = 401) {
    super(message, registry, status);
    this.name = 'AuthenticationError';
  }
}

/** A tag, digest or repository the registry does not have. */
export class NotFoundError extends RegistryError {
  constructor(
    readonly reference: string,
    registry: string,
    code?: string,
  ) {
    super(`not found: ${reference}`, registry, 404, code);
    this.name = 'NotFoundError';
  }
}

/** The registry answered with something this client will not use (schema 1, unknown media type). */
export class UnsupportedManifestError extends RegistryError {
  constructor(message: string, registry: string) {
    super(message, registry);
    this.name = 'UnsupportedManifestError';
  }
}

/** Content that does not match the digest or size it was asked for by. */
export class ContentVerificationError extends RegistryError {
  constructor(message: string, registry: string) {
    super(message, registry);
    this.name = 'ContentVerificationError';
  }
}

/** A platform the index does not provide. */
export class PlatformNotFoundError extends RegistryError {
  constructor(message: string, registry: string) {
    super(message, registry);
    this.name = 'PlatformNotFoundError';
  }
}

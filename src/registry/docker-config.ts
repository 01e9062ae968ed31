// Docker's config.json, read for credentials and written the way `docker login` / `docker logout`
// write it, so docker, skopeo, buildah and builder all share the same file:
//
//   $DOCKER_CONFIG/config.json (else ~/.docker/config.json), mode 0600, other keys kept as they are
//   { "auths": { "127.0.0.1:5000": { "auth": base64("user:password") } } }
//
// With a credential helper configured for the registry (`credHelpers[server]`, else `credsStore`)
// the secret goes to `docker-credential-<name> store` instead, and `auths` only records the
// server with an empty entry, as docker does. Docker Hub is keyed `https://index.docker.io/v1/`.

import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { DOCKER_HUB_AUTH_KEY, normaliseAuthKey, type CredentialStore, type Credentials } from './auth.js';
import { eraseWithHelper, runCredentialHelper, storeWithHelper } from './credential-helper.js';
import { DOCKER_HUB, InvalidReferenceError, normaliseRegistry } from './reference.js';

/** An `auths` entry: base64 `user:password` in `auth`, or the two apart; `identitytoken` for OAuth2. */
interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

type ConfigFile = Record<string, unknown> & {
  auths?: Record<string, AuthEntry & Record<string, unknown>>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
};

export interface DockerConfigOptions {
  /** The config.json (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json). */
  path?: string;
  env?: NodeJS.ProcessEnv;
}

/** The config.json docker reads: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG || join(homedir(), '.docker'), 'config.json');
}

/**
 * The registry a `login`/`logout` argument names and the key docker files it under:
 * nothing or any spelling of Docker Hub → `docker.io` / `https://index.docker.io/v1/`;
 * `https://host:5000/v2/` → `host:5000` / `host:5000`.
 */
export function loginServer(server: string | undefined): { registry: string; key: string } {
  const text = (server ?? '').trim();
  if (!text) return { registry: DOCKER_HUB, key: DOCKER_HUB_AUTH_KEY };
  const registry = normaliseAuthKey(text);
  if (!registry || /[\s@]/.test(registry)) throw new InvalidReferenceError(text, 'not a registry server name');
  return { registry, key: registry === DOCKER_HUB ? DOCKER_HUB_AUTH_KEY : normaliseRegistry(registry) };
}

/**
 * Credentials from docker's config.json (`dockerConfigPath`, or `path`). Lookup order per
 * registry: `credHelpers[registry]`, then `credsStore`, then `auths`. A missing file means no
 * credentials; the file is read once, on first use.
 */
export class DockerConfigCredentialStore implements CredentialStore {
  readonly path: string;
  private config: Promise<ConfigFile> | undefined;

  constructor(options: DockerConfigOptions = {}) {
    this.path = options.path ?? dockerConfigPath(options.env);
  }

  async get(registry: string): Promise<Credentials | undefined> {
    const config = await (this.config ??= readConfig(this.path));
    const wanted = normaliseAuthKey(registry);
    const helper = findEntry(config.credHelpers, wanted)?.[1];
    if (helper) return runCredentialHelper(helper, serverUrlFor(wanted, config.credHelpers));
    if (config.credsStore) {
      const fromStore = await runCredentialHelper(config.credsStore, serverUrlFor(wanted, config.auths));
      if (fromStore) return fromStore;
    }
    const entry = findEntry(config.auths, wanted)?.[1];
    return entry ? decodeAuthEntry(entry, this.path) : undefined;
  }
}

/** Where `login` put the credentials. */
export interface StoredWhere {
  path: string;
  /** The credential helper that holds the secret, when one is configured. */
  helper?: string;
}

/** Saves credentials for `server` as `docker login` does. */
export async function saveCredentials(server: string | undefined, creds: Credentials, opts: DockerConfigOptions = {}): Promise<StoredWhere> {
  const path = opts.path ?? dockerConfigPath(opts.env);
  const { registry, key } = loginServer(server);
  const config = await readConfig(path);
  const auths = removeEntries(config.auths ?? {}, registry);
  const helper = helperFor(config, registry);
  if (helper) {
    await storeWithHelper(helper, key, creds);
    auths[key] = {};
  } else if (creds.identityToken) {
    auths[key] = { auth: Buffer.from(`${creds.username}:`).toString('base64'), identitytoken: creds.identityToken };
  } else {
    auths[key] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
  }
  config.auths = auths;
  await writeConfig(path, config);
  return helper ? { path, helper } : { path };
}

/**
 * Removes the credentials for `server` as `docker logout` does: every `auths` entry naming the
 * registry, and the helper's copy. Returns false when there was nothing to remove.
 */
export async function removeCredentials(server: string | undefined, opts: DockerConfigOptions = {}): Promise<boolean> {
  const path = opts.path ?? dockerConfigPath(opts.env);
  const { registry, key } = loginServer(server);
  const config = await readConfig(path);
  const before = Object.keys(config.auths ?? {}).length;
  const auths = removeEntries(config.auths ?? {}, registry);
  let removed = Object.keys(auths).length !== before;
  const helper = helperFor(config, registry);
  if (helper && (await eraseWithHelper(helper, key))) removed = true;
  if (config.auths) {
    config.auths = auths;
    await writeConfig(path, config);
  }
  return removed;
}

function helperFor(config: ConfigFile, registry: string): string | undefined {
  return findEntry(config.credHelpers, registry)?.[1] || config.credsStore || undefined;
}

function findEntry<T>(map: Record<string, T> | undefined, wanted: string): [string, T] | undefined {
  if (!map) return undefined;
  return Object.entries(map).find(([key]) => normaliseAuthKey(key) === wanted);
}

/** The server name a credential helper knows the registry by: the config's own key, else docker's default. */
function serverUrlFor(registry: string, map: Record<string, unknown> | undefined): string {
  const key = findEntry(map, registry)?.[0];
  if (key) return key;
  return registry === DOCKER_HUB ? DOCKER_HUB_AUTH_KEY : registry;
}

function decodeAuthEntry(entry: AuthEntry, path: string): Credentials | undefined {
  let username = entry.username ?? '';
  let password = entry.password ?? '';
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new Error(`invalid "auth" entry in ${path}: expected base64 of user:password`);
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (entry.identitytoken) return { username, password, identityToken: entry.identitytoken };
  return username || password ? { username, password } : undefined;
}

function removeEntries(auths: Record<string, Record<string, unknown>>, registry: string): Record<string, Record<string, unknown>> {
  return Object.fromEntries(Object.entries(auths).filter(([k]) => normaliseAuthKey(k) !== registry));
}

async function readConfig(path: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  if (!text.trim()) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`cannot parse docker config ${path}: ${(err as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`docker config ${path} is not a JSON object`);
  return parsed as ConfigFile;
}

/** Replaces the file atomically (temp file + rename), readable by its owner only. */
async function writeConfig(path: string, config: ConfigFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(config, null, '\t')}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

// Authentication against real registries: htpasswd (Basic) and token (Bearer, like Docker Hub),
// with credentials from docker's config.json and from a credential helper.

import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import {
  AuthenticationError,
  RegistryClient,
  StaticCredentialStore,
  parseReference,
  type ImageReference,
} from '../../src/registry/index.js';
import { hostArchitecture, pushBusyboxImage } from '../helpers/base-image.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const linux = { os: 'linux', architecture: hostArchitecture() };
const USER = 'builder';
const PASSWORD = 'correct horse:battery';

let workDir: string;
const savedEnv = { DOCKER_CONFIG: process.env.DOCKER_CONFIG, PATH: process.env.PATH };
const clients: RegistryClient[] = [];

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'builder-auth-test-'));
});

afterEach(async () => {
  process.env.DOCKER_CONFIG = savedEnv.DOCKER_CONFIG;
  if (savedEnv.DOCKER_CONFIG === undefined) delete process.env.DOCKER_CONFIG;
  process.env.PATH = savedEnv.PATH;
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/** Writes a docker config.json into a fresh dir and points $DOCKER_CONFIG at it, as a user would. */
async function useDockerConfig(config: unknown): Promise<void> {
  const dir = await mkdtemp(join(workDir, 'docker-config-'));
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  process.env.DOCKER_CONFIG = dir;
}

/** A client with default options: credentials come from $DOCKER_CONFIG/config.json. */
function defaultClient(): RegistryClient {
  const c = new RegistryClient();
  clients.push(c);
  return c;
}

function basicAuth(user: string, password: string): string {
  return Buffer.from(`${user}:${password}`).toString('base64');
}

async function pullEverything(client: RegistryClient, ref: ImageReference): Promise<void> {
  const image = await client.resolve(ref, linux);
  const store = new ContentStore(await mkdtemp(join(workDir, 'store-')));
  await store.init();
  for (const desc of [image.manifest.config, ...image.manifest.layers]) {
    await store.ingest(await client.fetchBlob(image.ref, desc), { digest: desc.digest, size: desc.size });
  }
}

async function copyImage(client: RegistryClient, from: ImageReference, to: ImageReference): Promise<void> {
  const image = await client.resolve(from, linux);
  for (const desc of [image.manifest.config, ...image.manifest.layers]) {
    await client.pushBlob(to, desc, () => {
      throw new Error('blob should be mounted from the source repository');
    }, { mountFrom: from.repository });
  }
  await client.pushManifest(to, image.mediaType, image.manifestBytes);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('htpasswd (Basic) registry', () => {
  let reg: RunningRegistry;
  let ref: ImageReference;

  beforeAll(async () => {
    reg = await startRegistry({ htpasswd: { user: USER, password: PASSWORD } });
    ref = parseReference((await pushBusyboxImage(reg.host, 'library/busybox', 'latest', { creds: { user: USER, password: PASSWORD } })).ref);
  });
  afterAll(async () => reg?.stop());

  it('pulls and pushes with an `auth` entry from $DOCKER_CONFIG/config.json', async () => {
    await useDockerConfig({ auths: { [reg.host]: { auth: basicAuth(USER, PASSWORD) } } });
    const client = defaultClient();
    await pullEverything(client, ref);
    await copyImage(client, ref, parseReference(`${reg.host}/team/copy:1`));
    expect((await client.resolve(parseReference(`${reg.host}/team/copy:1`), linux)).manifestDigest).toBeTruthy();
  });

  it('accepts username/password entries and URL-shaped keys', async () => {
    await useDockerConfig({ auths: { [`http://${reg.host}/v2/`]: { username: USER, password: PASSWORD } } });
    await pullEverything(defaultClient(), ref);
  });

  it('gets credentials from a credential helper named in credHelpers', async () => {
    const bin = join(workDir, 'helper-bin');
    await mkdir(bin, { recursive: true });
    const helper = join(bin, 'docker-credential-buildertest');
    await writeFile(
      helper,
      `#!/bin/sh\n[ "$1" = get ] || exit 2\nread server\nif [ "$server" = "${reg.host}" ]; then\n` +
        `  printf '%s' '{"ServerURL":"${reg.host}","Username":"${USER}","Secret":"${PASSWORD}"}'\n` +
        `else\n  echo "credentials not found in native keychain"; exit 1\nfi\n`,
    );
    await chmod(helper, 0o755);
    process.env.PATH = `${bin}:${savedEnv.PATH ?? ''}`;
    await useDockerConfig({ auths: {}, credHelpers: { [reg.host]: 'buildertest' } });
    await pullEverything(defaultClient(), ref);
  });

  it('names the registry when the password is wrong, without revealing it', async () => {
    const wrong = 'not-the-password';
    await useDockerConfig({ auths: { [reg.host]: { auth: basicAuth(USER, wrong) } } });
    const err = await rejection(defaultClient().resolve(ref, linux));
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err.message).toBe(`authentication failed for ${reg.host}: 401 Unauthorized`);
    expect(err.message).not.toContain(wrong);
  });

  it('says credentials are missing when the config has none for the registry', async () => {
    await useDockerConfig({ auths: { 'other.example.com': { auth: basicAuth(USER, PASSWORD) } } });
    const err = await rejection(defaultClient().resolve(ref, linux));
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err.message).toMatch(new RegExp(`^authentication required for ${reg.host.replace(/\./g, '\\.')}: 401 Unauthorized \\(no credentials found`));
  });
});

describe('token (Bearer) registry', () => {
  let reg: RunningRegistry;
  let ref: ImageReference;

  beforeAll(async () => {
    reg = await startRegistry({ token: { users: { [USER]: PASSWORD } } });
    ref = parseReference((await pushBusyboxImage(reg.host, 'library/busybox', 'latest', { creds: { user: USER, password: PASSWORD } })).ref);
  });
  afterAll(async () => reg?.stop());

  it('pulls anonymously with one token for the whole pull', async () => {
    await useDockerConfig({ auths: {} });
    const before = reg.tokenRequests.length;
    await pullEverything(defaultClient(), ref);
    const requests = reg.tokenRequests.slice(before);
    expect(requests).toEqual([{ user: undefined, scopes: ['repository:library/busybox:pull'], status: 200 }]);
  });

  it('pushes with credentials, asking for push and for pull on the mount source', async () => {
    const client = new RegistryClient({ credentials: new StaticCredentialStore({ [reg.host]: { username: USER, password: PASSWORD } }) });
    clients.push(client);
    const before = reg.tokenRequests.length;
    await copyImage(client, ref, parseReference(`${reg.host}/team/app:2`));
    const scopes = reg.tokenRequests.slice(before).map((r) => ({ user: r.user, scopes: r.scopes }));
    expect(scopes).toContainEqual({ user: USER, scopes: ['repository:library/busybox:pull', 'repository:team/app:pull,push'] });
    expect(reg.tokenRequests.slice(before).every((r) => r.status === 200)).toBe(true);
  });

  it('refuses an anonymous push with a clear error', async () => {
    await useDockerConfig({ auths: {} });
    const err = await rejection(copyImage(defaultClient(), ref, parseReference(`${reg.host}/team/anon:1`)));
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err.message).toMatch(new RegExp(`^authentication failed for ${reg.host.replace(/\./g, '\\.')}: 401 Unauthorized \\(no credentials found`));
  });

  it('names the registry when the token server rejects the password', async () => {
    const wrong = 'wrong-password';
    await useDockerConfig({ auths: { [reg.host]: { username: USER, password: wrong } } });
    const err = await rejection(defaultClient().resolve(ref, linux));
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err.message).toBe(`authentication failed for ${reg.host}: 401 Unauthorized`);
    expect(err.message).not.toContain(wrong);
  });
});

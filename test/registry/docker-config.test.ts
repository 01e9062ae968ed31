// Writing docker's config.json as `docker login` / `docker logout` do (no registry needed here;
// the CLI test checks the same against real registries and skopeo).

import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobSources, DockerConfigCredentialStore, dockerConfigPath, loginServer, parseReference, removeCredentials, saveCredentials } from '../../src/registry/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'builder-docker-config-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('login servers', () => {
  it('files Docker Hub under https://index.docker.io/v1/ and other registries under host[:port]', () => {
    expect(loginServer(undefined)).toEqual({ registry: 'docker.io', key: 'https://index.docker.io/v1/' });
    expect(loginServer('index.docker.io')).toEqual({ registry: 'docker.io', key: 'https://index.docker.io/v1/' });
    expect(loginServer('https://registry-1.docker.io/v2/')).toEqual({ registry: 'docker.io', key: 'https://index.docker.io/v1/' });
    expect(loginServer('https://ghcr.io')).toEqual({ registry: 'ghcr.io', key: 'ghcr.io' });
    expect(loginServer('127.0.0.1:5000')).toEqual({ registry: '127.0.0.1:5000', key: '127.0.0.1:5000' });
    expect(() => loginServer('user@host')).toThrow(/not a registry server name/);
  });
});

describe('saveCredentials / removeCredentials', () => {
  it('creates the file 0600, replaces other spellings of the same registry, keeps everything else', async () => {
    const path = join(dir, 'a', 'config.json');
    await saveCredentials('ghcr.io', { username: 'u', password: 'p1' }, { path });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await writeFile(
      path,
      JSON.stringify({ auths: { 'https://ghcr.io/v2/': { auth: b64('old:old') }, 'quay.io': { auth: b64('q:q') } }, currentContext: 'x' }),
    );
    await saveCredentials('ghcr.io', { username: 'u', password: 'p2' }, { path });
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({
      auths: { 'quay.io': { auth: b64('q:q') }, 'ghcr.io': { auth: b64('u:p2') } },
      currentContext: 'x',
    });
    expect(await new DockerConfigCredentialStore({ path }).get('ghcr.io')).toEqual({ username: 'u', password: 'p2' });

    await saveCredentials(undefined, { username: 'hub', password: 'h' }, { path });
    expect(await new DockerConfigCredentialStore({ path }).get('docker.io')).toEqual({ username: 'hub', password: 'h' });

    expect(await removeCredentials('docker.io', { path })).toBe(true);
    expect(await removeCredentials('docker.io', { path })).toBe(false);
    expect(Object.keys(JSON.parse(await readFile(path, 'utf8')).auths)).toEqual(['quay.io', 'ghcr.io']);
  });

  it('refuses to overwrite a config file it cannot parse', async () => {
    const path = join(dir, 'broken.json');
    await writeFile(path, '{ not json');
    await expect(saveCredentials('ghcr.io', { username: 'u', password: 'p' }, { path })).rejects.toThrow(/cannot parse docker config/);
    expect(await readFile(path, 'utf8')).toBe('{ not json');
    await expect(new DockerConfigCredentialStore({ path }).get('ghcr.io')).rejects.toThrow(`cannot parse docker config ${path}`);
  });

  it('reads the file login writes, as docker does: an empty one holds nothing, an empty DOCKER_CONFIG means the default', async () => {
    const path = join(dir, 'empty.json');
    await writeFile(path, '');
    expect(await new DockerConfigCredentialStore({ path }).get('ghcr.io')).toBeUndefined();
    expect(new DockerConfigCredentialStore({ env: { DOCKER_CONFIG: '' } }).path).toBe(dockerConfigPath({}));
    expect(new DockerConfigCredentialStore({ env: { DOCKER_CONFIG: join(dir, 'd') } }).path).toBe(join(dir, 'd', 'config.json'));
  });
});

describe('blob sources', () => {
  it('names another repository of the same registry as a mount source, never the target itself', async () => {
    const root = await mkdtemp(join(dir, 'state-'));
    const digest = `sha256:${'a'.repeat(64)}` as const;
    await new BlobSources(root).record(parseReference('127.0.0.1:5000/library/busybox:latest'), [digest]);
    const sources = new BlobSources(root);
    expect(await sources.mountSource(digest, parseReference('127.0.0.1:5000/team/app:1'))).toBe('library/busybox');
    expect(await sources.mountSource(digest, parseReference('127.0.0.1:5000/library/busybox:2'))).toBeUndefined();
    expect(await sources.mountSource(digest, parseReference('127.0.0.1:5001/team/app:1'))).toBeUndefined();
    expect(await sources.mountSource(`sha256:${'b'.repeat(64)}`, parseReference('127.0.0.1:5000/team/app:1'))).toBeUndefined();
  });
});

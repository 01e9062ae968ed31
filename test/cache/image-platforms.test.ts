// A name in the local store resolves per platform, as in Docker's containerd image store: a base
// pulled for linux/arm64 is never used for a linux/amd64 build, pulls of several platforms of
// one registry index all stay usable (and skopeo picks among them with --override-arch), a tag
// that moved at the registry replaces the name, and a build's tag replaces the whole name.

import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import type { ImageIndex } from '../../src/oci/types.js';
import { plan } from '../../src/client/plan.js';
import { pull } from '../../src/client/pull.js';
import { pushMultiPlatformImage } from '../helpers/base-image.js';
import { registryUnavailable, startRegistry, type RunningRegistry } from '../helpers/registry.js';

const run = promisify(execFile);
const skip = registryUnavailable();
const insecure = (reg: RunningRegistry) => ({ insecureRegistries: [reg.host] });

/** The base manifest a dry run resolves `FROM name` to from the local store alone, per platform. */
async function localBase(root: string, name: string, platform: string): Promise<string | undefined> {
  const ctx = await mkdtemp(join(tmpdir(), 'builder-plan-'));
  try {
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${name}\n`);
    const result = await plan({ context: ctx, root, platform });
    return result.unresolved.length > 0 ? undefined : result.stages[0]!.base.split('@')[1];
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
}

async function skopeoArch(root: string, name: string, arch?: string): Promise<string> {
  const args = [...(arch ? ['--override-arch', arch] : []), 'inspect', '--format', '{{.Architecture}}', `oci:${root}:${name}`];
  return (await run('skopeo', args)).stdout.trim();
}

describe.skipIf(Boolean(skip))(`per-platform names in the local store${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let reg: RunningRegistry;
  let work: string;

  beforeAll(async () => {
    reg = await startRegistry();
    work = await mkdtemp(join(tmpdir(), 'builder-platforms-'));
  });

  afterAll(async () => {
    await reg?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('pulls of two platforms of one index each resolve their own; skopeo reads both', async () => {
    const root = join(work, 'pulls');
    const image = await pushMultiPlatformImage(reg.host, 'multi/base', '1', ['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
    const name = `${reg.host}/multi/base:1`;

    await pull({ ref: image.ref, platform: 'linux/arm64', root, ...insecure(reg) });
    expect(await localBase(root, name, 'linux/arm64')).toBe(image.manifests['linux/arm64']);
    // Not the arm64 image for an amd64 build: not local for that platform at all.
    expect(await localBase(root, name, 'linux/amd64')).toBeUndefined();
    // One platform: the name points at its manifest, as before, for skopeo and umoci.
    expect(await skopeoArch(root, name)).toBe('arm64');
    await run('umoci', ['unpack', '--rootless', '--image', `${root}:${name}`, join(work, 'unpacked')]);
    expect((await readFile(join(work, 'unpacked', 'config.json'), 'utf8')).length).toBeGreaterThan(0);

    await pull({ ref: image.ref, platform: 'linux/amd64', root, ...insecure(reg) });
    expect(await localBase(root, name, 'linux/amd64')).toBe(image.manifests['linux/amd64']);
    expect(await localBase(root, name, 'linux/arm64')).toBe(image.manifests['linux/arm64']);
    // arm/v7 was never pulled, and arm64 must not stand in for it.
    expect(await localBase(root, name, 'linux/arm/v7')).toBeUndefined();
    expect(await skopeoArch(root, name)).toBe('amd64');
    expect(await skopeoArch(root, name, 'arm64')).toBe('arm64');

    // The tag moves at the registry: pulling it for one platform makes the name that image alone.
    const moved = await pushMultiPlatformImage(reg.host, 'multi/base', '1', ['linux/amd64', 'linux/arm64'], { version: '2' });
    await pull({ ref: moved.ref, platform: 'linux/amd64', root, ...insecure(reg) });
    expect(await localBase(root, name, 'linux/amd64')).toBe(moved.manifests['linux/amd64']);
    expect(await localBase(root, name, 'linux/arm64')).toBeUndefined();
  });

  it('a build for amd64 does not use the arm64 image the store has under that name, and names the amd64 one beside it', async () => {
    const root = join(work, 'build');
    const image = await pushMultiPlatformImage(reg.host, 'multi/app-base', '1', ['linux/amd64', 'linux/arm64']);
    const name = `${reg.host}/multi/app-base:1`;
    await pull({ ref: image.ref, platform: 'linux/arm64', root, ...insecure(reg) });

    const ctx = join(work, 'build-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${name}\nARG TARGETPLATFORM\nLABEL tp=$TARGETPLATFORM\n`);
    const warnings: string[] = [];
    const amd64 = await build({ context: ctx, root, tags: ['local/app:1'], ...insecure(reg), onProgress: (e) => void (e.type === 'warning' && warnings.push(e.message)) });
    expect(amd64.config.architecture).toBe('amd64');
    expect(amd64.config.config?.Labels).toEqual({ tp: 'linux/amd64' });
    expect(warnings).toEqual([]);
    expect(await localBase(root, name, 'linux/amd64')).toBe(image.manifests['linux/amd64']);
    expect(await localBase(root, name, 'linux/arm64')).toBe(image.manifests['linux/arm64']);

    // A build names one image: building for arm64 replaces the whole name, as docker build does.
    const arm64 = await build({ context: ctx, root, tags: ['local/app:1'], platform: 'linux/arm64', ...insecure(reg) });
    expect([arm64.config.architecture, arm64.config.variant, arm64.config.config?.Labels]).toEqual(['arm64', undefined, { tp: 'linux/arm64' }]);
    expect(await localBase(root, 'local/app:1', 'linux/arm64')).toBe(arm64.manifestDigest);
    expect(await localBase(root, 'local/app:1', 'linux/amd64')).toBeUndefined();
    const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as ImageIndex;
    expect(index.manifests.filter((d) => d.annotations?.['org.opencontainers.image.ref.name'] === 'docker.io/local/app:1')).toEqual([
      expect.objectContaining({ digest: arm64.manifestDigest, platform: { os: 'linux', architecture: 'arm64' } }),
    ]);
  });

  it('a base a registry serves only for another architecture is used, with BuildKit\'s InvalidBaseImagePlatform lint', async () => {
    const root = join(work, 'single');
    const only = await pushMultiPlatformImage(reg.host, 'multi/arm-only', '1', ['linux/arm64']);
    // The arm64 manifest alone under a tag, as a registry serves a single-platform image.
    await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false', '--override-arch', 'arm64',
      `docker://${only.ref}`, `docker://${reg.host}/multi/arm-single:1`]);
    const ctx = join(work, 'single-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${reg.host}/multi/arm-single:1\nLABEL x=1\n`);
    const warnings: Array<{ message: string; line?: number }> = [];
    const result = await build({ context: ctx, root, ...insecure(reg), onProgress: (e) => void (e.type === 'warning' && warnings.push({ message: e.message, line: e.line })) });
    // Docker 20.10 builds it silently and declares arm64; current BuildKit adds the lint.
    expect(result.config.architecture).toBe('arm64');
    expect(warnings).toEqual([
      { message: `Base image ${reg.host}/multi/arm-single:1 was pulled with platform "linux/arm64", expected "linux/amd64" for current build`, line: 1 },
    ]);
  });
});

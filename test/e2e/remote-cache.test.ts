// The cache shared through a registry (and an OCI layout, and an image's inline cache): a build
// on one state directory exports it, a build on a fresh state directory imports it. The fresh
// build must run no RUN step and download, per the registry's own access log, no blob that its
// final image does not contain: a first stage's big layer, cached but only read through a
// COPY --from that is cached too, is never pulled, nor is that stage's own base image.

import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest, ImageConfigFile, ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { build } from '../../src/client/build.js';
import type { ProgressEvent } from '../../src/progress.js';
import { BUSYBOX_BIN, BUSYBOX_PATH_ENV, cachedLayout, populateBusybox, pushBusyboxImage, pushLayout } from '../helpers/base-image.js';
import { run, runBuilder, stepsByStatus } from '../helpers/cli.js';
import { registryUnavailable, startRegistry, type RunningRegistry } from '../helpers/registry.js';

const BIG_BYTES = 3_000_000;

describe.skipIf(registryUnavailable())('remote cache', () => {
  let registry: RunningRegistry;
  let work: string;
  let context: string;
  let base: string;
  /** The first stage's base: busybox with one more file, so its layer is not the final image's. */
  let stageBase: string;

  beforeAll(async () => {
    registry = await startRegistry();
    base = (await pushBusyboxImage(registry.host)).ref;
    const marked = await cachedLayout({
      name: 'busybox-marked',
      inputs: [await readFile(BUSYBOX_BIN), 'marked'],
      populate: async (rootfs) => {
        await populateBusybox(rootfs);
        await writeFile(join(rootfs, 'etc/stage-base'), 'first stage only\n');
      },
      cmd: ['sh'],
      env: [BUSYBOX_PATH_ENV],
    });
    stageBase = (await pushLayout(marked, registry.host, 'library/busybox-marked', 'latest')).ref;
    work = await mkdtemp(join(tmpdir(), 'builder-remote-cache-'));
    context = join(work, 'context');
    await mkdir(context);
    await writeFile(
      join(context, 'Dockerfile'),
      [
        `FROM ${stageBase} AS big`,
        `RUN head -c ${BIG_BYTES} /dev/urandom > /big && echo small > /small`,
        `FROM ${base}`,
        'COPY --from=big /small /small',
        'RUN cat /small > /built',
        '',
      ].join('\n'),
    );
  }, 120_000);
  afterAll(async () => {
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const env = { ...process.env, SOURCE_DATE_EPOCH: '0' };
  async function buildIn(root: string, args: string[]) {
    const res = await runBuilder(['build', '--progress', 'json', '--network', 'none', '--root', join(work, root), ...args, context], { env });
    expect(res.code, res.stderr).toBe(0);
    const manifestDigest = res.stdout.trim().split('\n').at(-1) as Digest;
    const manifest = await storedJson<ImageManifest>(root, manifestDigest);
    return { ...stepsByStatus(res.stderr), stderr: res.stderr, manifest, config: await storedJson<ImageConfigFile>(root, manifest.config.digest) };
  }
  const storedJson = async <T>(root: string, digest: Digest): Promise<T> =>
    JSON.parse(await readFile(join(work, root, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as T;
  const rawManifest = <T>(ref: string): T => JSON.parse(run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`])) as T;
  /** Digests of the blobs the registry served (GET) since `offset` bytes of its log. */
  async function blobGets(offset: number): Promise<Set<string>> {
    const log = (await readFile(registry.logPath, 'utf8')).slice(offset);
    return new Set([...log.matchAll(/"GET \/v2\/[^"]*\/blobs\/(sha256:[0-9a-f]{64}) HTTP[^"]*" 200/g)].map((m) => m[1]!));
  }
  const logSize = async () => (await readFile(registry.logPath, 'utf8')).length;
  const RUNS = ['[big 2/2] RUN', '[stage-1 3/3] RUN'];
  const isRun = (name: string) => / RUN /.test(name);

  let first: Awaited<ReturnType<typeof buildIn>>;
  const maxRef = () => `${registry.host}/cache/app:max`;
  const minRef = () => `${registry.host}/cache/app:min`;
  const localDir = () => join(work, 'local-cache');

  it('exports mode=max and mode=min caches in BuildKit\'s cache manifest format', async () => {
    first = await buildIn('first', [
      '--cache-to', `type=registry,ref=${maxRef()},mode=max`,
      '--cache-to', `type=registry,ref=${minRef()}`,
      '--cache-to', `type=local,dest=${localDir()},mode=max`,
    ]);
    expect(first.ran.filter(isRun).map((n) => n.slice(0, n.indexOf(' RUN') + 4))).toEqual(RUNS);

    const index = rawManifest<ImageIndex>(maxRef());
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const configs = index.manifests.filter((m) => m.mediaType === 'application/vnd.buildkit.cacheconfig.v0');
    expect(configs).toHaveLength(1);
    const layers = index.manifests.filter((m) => m !== configs[0]);
    for (const l of layers) {
      expect(l.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
      expect(l.annotations?.['containerd.io/uncompressed']).toMatch(/^sha256:[0-9a-f]{64}$/);
    }
    // max has the first stage's big layer; min only the final stage's.
    expect(layers.some((l) => l.size > BIG_BYTES)).toBe(true);
    expect(rawManifest<ImageIndex>(minRef()).manifests.some((m) => m.size > BIG_BYTES)).toBe(false);
  }, 180_000);

  it('a fresh state directory runs no RUN step and downloads only the final image\'s layers (mode=max)', async () => {
    const offset = await logSize();
    const fresh = await buildIn('fresh-max', ['--cache-from', `type=registry,ref=${maxRef()}`]);
    expect(fresh.ran.filter(isRun)).toEqual([]);
    expect(fresh.cached.filter(isRun).length).toBe(2);
    // The same image: same config (so same diff_ids) as the build that ran everything.
    expect(fresh.config).toEqual(first.config);

    const fetched = await blobGets(offset);
    const index = rawManifest<ImageIndex>(maxRef());
    const cacheConfig = index.manifests.find((m) => m.mediaType === 'application/vnd.buildkit.cacheconfig.v0')!.digest;
    const bases = [rawManifest<ImageManifest>(base), rawManifest<ImageManifest>(stageBase)];
    const finalLayers = new Set<string>(fresh.manifest.layers.map((l) => l.digest));
    // Besides the final image's layers, only documents: the cache config and the base images' configs.
    expect([...fetched].filter((d) => !finalLayers.has(d)).sort()).toEqual([cacheConfig, ...bases.map((b) => b.config.digest)].sort());
    for (const layer of finalLayers) expect(fetched.has(layer)).toBe(true);
    const big = index.manifests.find((m) => m.size > BIG_BYTES)!.digest;
    expect(fetched.has(big)).toBe(false);
    expect(fetched.has(bases[1]!.layers[0]!.digest)).toBe(false);

    // What was fetched is recorded locally, and only that: the store stays consistent, and the
    // final stage hits again without the import.
    const doctor = await runBuilder(['doctor', '--root', join(work, 'fresh-max')]);
    expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0);
    const again = await buildIn('fresh-max', []);
    expect(again.cached).toContain('[stage-1 3/3] RUN cat /small > /built');
  }, 180_000);

  it('a push after importing mounts the fetched layers from the cache repository instead of uploading them', async () => {
    const offset = await logSize();
    const ref = `${registry.host}/app/pushed:1`;
    const fresh = await buildIn('fresh-push', ['--cache-from', maxRef(), '-t', ref, '--push']);
    expect(fresh.ran.filter(isRun)).toEqual([]);
    const log = (await readFile(registry.logPath, 'utf8')).slice(offset);
    const uploaded = [...log.matchAll(/"PUT \/v2\/app\/pushed\/blobs\/uploads\/[^" ]*digest=(sha256(?::|%3A)[0-9a-f]{64})[^"]*" 201/g)].map((m) => m[1]!.replace('%3A', ':'));
    const mounted = [...log.matchAll(/"POST \/v2\/app\/pushed\/blobs\/uploads\/\?[^"]*mount=(sha256(?::|%3A)[0-9a-f]{64})[^"]*" 201/g)].map((m) => m[1]!.replace('%3A', ':'));
    const layers = rawManifest<ImageManifest>(ref).layers.map((l) => l.digest);
    expect(uploaded.filter((d) => layers.includes(d as Digest))).toEqual([]);
    expect(mounted.sort()).toEqual([...layers].sort());
  }, 180_000);

  it('mode=min shares the final stage: the first stage, which only feeds its cached COPY, never runs nor pulls', async () => {
    const offset = await logSize();
    const fresh = await buildIn('fresh-min', ['--cache-from', minRef()]);
    expect(fresh.ran).toEqual([]);
    expect(fresh.cached.filter(isRun).length).toBe(2);
    expect(fresh.config).toEqual(first.config);
    const fetched = await blobGets(offset);
    const maxIndex = rawManifest<ImageIndex>(maxRef());
    expect(fetched.has(maxIndex.manifests.find((m) => m.size > BIG_BYTES)!.digest)).toBe(false);
    expect(fetched.has(rawManifest<ImageManifest>(stageBase).layers[0]!.digest)).toBe(false);
  }, 180_000);

  it('type=local round trip: a fresh state directory runs no RUN step', async () => {
    const fresh = await buildIn('fresh-local', ['--cache-from', `type=local,src=${localDir()}`]);
    expect(fresh.ran.filter(isRun)).toEqual([]);
    expect(fresh.config).toEqual(first.config);
  }, 180_000);

  it('the library takes the same options, typed', async () => {
    const events: ProgressEvent[] = [];
    const result = await build({
      context,
      root: join(work, 'fresh-library'),
      network: 'none',
      sourceDateEpoch: 0,
      cacheFrom: [{ type: 'local', src: localDir() }],
      cacheTo: [{ type: 'local', dest: join(work, 'library-cache'), mode: 'max' }],
      onProgress: (e) => events.push(e),
    });
    const runs = events.filter((e) => e.type === 'step' && / RUN /.test(e.name));
    expect(runs.filter((e) => e.type === 'step' && e.status === 'started')).toEqual([]);
    expect(runs.filter((e) => e.type === 'step' && e.status === 'cached')).toHaveLength(2);
    expect(result.config).toEqual(first.config);
    // Exporting what was imported fetches it: the re-export holds every layer the import had.
    const layerCount = async (dir: string) => {
      const layout = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as ImageIndex;
      const index = JSON.parse(await readFile(join(dir, 'blobs', 'sha256', layout.manifests[0]!.digest.slice(7)), 'utf8')) as ImageIndex;
      return index.manifests.length;
    };
    expect(await layerCount(join(work, 'library-cache'))).toBe(await layerCount(localDir()));
  }, 180_000);

  it('a cached layer whose bytes do not match its digest fails the build, naming the cache and the blob', async () => {
    const copy = join(work, 'local-corrupt');
    await cp(localDir(), copy, { recursive: true });
    const layout = JSON.parse(await readFile(join(copy, 'index.json'), 'utf8')) as ImageIndex;
    const blob = (d: string) => join(copy, 'blobs', 'sha256', d.slice(7));
    const index = JSON.parse(await readFile(blob(layout.manifests[0]!.digest), 'utf8')) as ImageIndex;
    const layers = index.manifests.filter((m) => m.mediaType.includes('layer'));
    for (const l of layers) await writeFile(blob(l.digest), Buffer.alloc(l.size, 'x'));
    const res = await runBuilder(['build', '--network', 'none', '--root', join(work, 'fresh-corrupt'), '--cache-from', `type=local,src=${copy}`, context], { env });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(new RegExp(`digest mismatch for ${copy}@sha256:[0-9a-f]{64}`));
  }, 180_000);

  it('type=inline: the pushed image carries its cache, and a fresh build from it runs nothing', async () => {
    const ref = `${registry.host}/app/inline:1`;
    await buildIn('first', ['-t', ref, '--push', '--cache-to', 'type=inline']);
    const pushed = rawManifest<ImageManifest>(ref);
    const config = JSON.parse(run('skopeo', ['inspect', '--raw', '--config', '--tls-verify=false', `docker://${ref}`])) as Record<string, unknown>;
    // BuildKit's inline cache: the records alone, their results indexes into the image's layers.
    const inline = JSON.parse(Buffer.from(config['moby.buildkit.cache.v0'] as string, 'base64').toString('utf8')) as Array<{ layers: Array<{ layer: number }> }>;
    expect(Array.isArray(inline)).toBe(true);
    expect(Math.max(...inline.map((r) => r.layers[0]!.layer))).toBe(pushed.layers.length - 1);

    const fresh = await buildIn('fresh-inline', ['--cache-from', ref]);
    // Inline is min mode (as in BuildKit): the final stage is cached, so the first one, which
    // only feeds it, is not needed.
    expect(fresh.ran).toEqual([]);
    expect(fresh.config.rootfs).toEqual(first.config.rootfs);
  }, 180_000);

  it('a missing --cache-from is a warning, a bad --cache-to a usage error', async () => {
    const missing = await buildIn('first', ['--cache-from', `${registry.host}/cache/none:1`]);
    expect(missing.stderr).toContain(`--cache-from ${registry.host}/cache/none:1: not found, building without it`);
    const plainImage = await buildIn('first', ['--cache-from', base, '--cache-to', 'type=inline']);
    expect(plainImage.stderr).toContain(`--cache-from ${base}: an image without an inline cache, building without it`);
    expect(plainImage.stderr).toContain('--cache-to type=inline: no image is pushed or exported');
    const bad = await runBuilder(['build', '--cache-to', 'type=registry,mode=max', context]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('invalid --cache-to "type=registry,mode=max": type=registry needs ref=');
  }, 120_000);
});

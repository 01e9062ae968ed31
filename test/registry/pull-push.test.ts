// Pull and push against a real distribution registry on 127.0.0.1, with an image made by
// umoci/skopeo and checked back with skopeo.

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest, STATUS_CODES } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import { pull } from '../../src/client/pull.js';
import { MediaType, type Descriptor, type Digest, type ImageIndex, type ImageManifest } from '../../src/oci/types.js';
import {
  NotFoundError,
  PlatformNotFoundError,
  RegistryClient,
  StaticCredentialStore,
  parseReference,
  type ResolvedImage,
} from '../../src/registry/index.js';
import { hostArchitecture, pushBusyboxImage } from '../helpers/base-image.js';
import { BUILDER_BIN } from '../helpers/cli.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const run = promisify(execFile);
const linux = { os: 'linux', architecture: hostArchitecture() };

let reg: RunningRegistry;
let pushed: { ref: string; digest: string };
let workDir: string;
let store: ContentStore;
let client: RegistryClient;

beforeAll(async () => {
  reg = await startRegistry();
  pushed = await pushBusyboxImage(reg.host);
  workDir = await mkdtemp(join(tmpdir(), 'builder-registry-test-'));
  store = new ContentStore(join(workDir, 'store'));
  await store.init();
  client = new RegistryClient({ credentials: new StaticCredentialStore() });
});

afterAll(async () => {
  await client?.close();
  await reg?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

async function pullAll(image: ResolvedImage, into: ContentStore, c = client): Promise<void> {
  for (const desc of [image.manifest.config, ...image.manifest.layers]) {
    await into.ingest(await c.fetchBlob(image.ref, desc), { digest: desc.digest, size: desc.size, source: desc.digest });
  }
}

async function tarEntries(stream: Readable): Promise<Map<string, { type: string; linkname?: string | null }>> {
  const entries = new Map<string, { type: string; linkname?: string | null }>();
  const extract = tar.extract();
  extract.on('entry', (header, body, next) => {
    entries.set(header.name.replace(/^\.\//, ''), { type: header.type ?? 'file', linkname: header.linkname });
    body.on('end', next).resume();
  });
  await new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve).on('error', reject);
    stream.pipe(createGunzip()).on('error', reject).pipe(extract);
  });
  return entries;
}

async function skopeoInspect(ref: string): Promise<{ Digest: string; Layers: string[]; Architecture: string; Os: string }> {
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`]);
  return JSON.parse(stdout) as { Digest: string; Layers: string[]; Architecture: string; Os: string };
}

describe('pull from a real registry', () => {
  it('resolves a tag to the manifest skopeo pushed, with its config', async () => {
    const image = await client.resolve(parseReference(pushed.ref), linux);
    expect(image.manifestDigest).toBe(pushed.digest);
    expect(image.ref.toString()).toBe(`${reg.host}/library/busybox:latest@${pushed.digest}`);
    expect(image.mediaType).toBe(MediaType.OciManifest);
    expect(image.manifest.layers).toHaveLength(1);
    expect(image.config.architecture).toBe(hostArchitecture());
    expect(image.config.os).toBe('linux');
    expect(image.config.config?.Cmd).toEqual(['sh']);
    expect(image.config.config?.Env).toContain('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    expect(createHash('sha256').update(image.configBytes).digest('hex')).toBe(image.configDigest.slice(7));
    expect(image.indexDigest).toBeUndefined();
  });

  it('pulls every blob into the content store, verified, and the layer holds busybox', async () => {
    const image = await client.resolve(parseReference(pushed.ref), linux);
    await pullAll(image, store);
    for (const desc of [image.manifest.config, ...image.manifest.layers]) {
      expect(await store.has(desc.digest)).toBe(true);
      expect(await store.size(desc.digest)).toBe(desc.size);
    }
    const entries = await tarEntries(store.read(image.manifest.layers[0]!.digest));
    expect(entries.get('bin/busybox')?.type).toBe('file');
    expect(entries.get('bin/sh')).toEqual({ type: 'symlink', linkname: 'busybox' });
    expect([...entries.keys()]).toContain('etc/passwd');
  });

  it('resolves by digest, and a tag+digest reference pulls the digest', async () => {
    const byDigest = await client.resolve(parseReference(`${reg.host}/library/busybox@${pushed.digest}`), linux);
    expect(byDigest.manifestDigest).toBe(pushed.digest);
    const both = await client.resolve(parseReference(`${reg.host}/library/busybox:no-such-tag@${pushed.digest}`), linux);
    expect(both.manifestDigest).toBe(pushed.digest);
    expect(both.ref.tag).toBe('no-such-tag');
  });

  it('reads Docker schema 2 manifests too', async () => {
    const docker = await pushBusyboxImage(reg.host, 'docker/busybox', 'v2s2', { format: 'v2s2' });
    const image = await client.resolve(parseReference(docker.ref), linux);
    expect(image.mediaType).toBe(MediaType.DockerManifest);
    expect(image.manifest.config.mediaType).toBe(MediaType.DockerConfig);
    expect(image.manifestDigest).toBe(docker.digest);
    const other = new ContentStore(join(workDir, 'store-v2s2'));
    await other.init();
    await pullAll(image, other);
    expect(await other.has(image.manifest.layers[0]!.digest)).toBe(true);
  });

  it('says which reference is missing for an unknown tag or repository', async () => {
    const tag = parseReference(`${reg.host}/library/busybox:does-not-exist`);
    await expect(client.resolve(tag, linux)).rejects.toThrow(NotFoundError);
    await expect(client.resolve(tag, linux)).rejects.toThrow(`not found: ${reg.host}/library/busybox:does-not-exist`);
    const repo = parseReference(`${reg.host}/nobody/here:1`);
    await expect(client.resolve(repo, linux)).rejects.toThrow(`not found: ${reg.host}/nobody/here:1`);
    expect(await client.hasBlob(tag, `sha256:${'0'.repeat(64)}`)).toBe(false);
  });

  it('says clearly when nothing listens at the registry address', async () => {
    const dead = parseReference(`127.0.0.1:${await closedPort()}/library/busybox:latest`);
    const quick = new RegistryClient({ credentials: new StaticCredentialStore(), retry: { retries: 1, baseDelayMs: 10 } });
    try {
      await expect(quick.resolve(dead, linux)).rejects.toThrow(/cannot reach registry 127\.0\.0\.1:\d+ .*ECONNREFUSED/);
    } finally {
      await quick.close();
    }
  });
});

describe('push to a real registry', () => {
  it('pushes blobs and manifest to another repository; skopeo sees the same image', async () => {
    const image = await client.resolve(parseReference(pushed.ref), linux);
    await pullAll(image, store);
    const target = parseReference(`${reg.host}/copies/busybox:v1`);
    for (const desc of [image.manifest.config, ...image.manifest.layers]) {
      await client.pushBlob(target, desc, () => store.read(desc.digest));
      expect(await client.hasBlob(target, desc.digest)).toBe(true);
    }
    const digest = await client.pushManifest(target, image.mediaType, image.manifestBytes);
    expect(digest).toBe(image.manifestDigest);

    const inspected = await skopeoInspect(`${reg.host}/copies/busybox:v1`);
    expect(inspected.Digest).toBe(image.manifestDigest);
    expect(inspected.Layers).toEqual(image.manifest.layers.map((l) => l.digest));
    expect(inspected.Architecture).toBe(hostArchitecture());
  });

  it('skips the upload of a blob the repository already has', async () => {
    const image = await client.resolve(parseReference(pushed.ref), linux);
    const layer = image.manifest.layers[0]!;
    await client.pushBlob(parseReference(`${reg.host}/library/busybox:latest`), layer, () => {
      throw new Error('must not upload an existing blob');
    });
  });

  it('mounts a blob from another repository instead of uploading it', async () => {
    const image = await client.resolve(parseReference(pushed.ref), linux);
    const target = parseReference(`${reg.host}/mounted/busybox:latest`);
    const layer = image.manifest.layers[0]!;
    expect(await client.hasBlob(target, layer.digest)).toBe(false);
    await client.pushBlob(target, layer, () => {
      throw new Error('must mount, not upload');
    }, { mountFrom: 'library/busybox' });
    expect(await client.hasBlob(target, layer.digest)).toBe(true);
  });

  it('streams a large blob up and back down byte for byte', async () => {
    const file = join(workDir, 'big.bin');
    const data = randomBytes(24 * 1024 * 1024);
    await writeFile(file, data);
    const desc: Descriptor = {
      mediaType: 'application/octet-stream',
      digest: `sha256:${createHash('sha256').update(data).digest('hex')}`,
      size: data.length,
    };
    const target = parseReference(`${reg.host}/big/blob:latest`);
    let opened = 0;
    await client.pushBlob(target, desc, () => {
      opened++;
      return createReadStream(file, { highWaterMark: 256 * 1024 });
    });
    expect(opened).toBe(1);
    const back = new ContentStore(join(workDir, 'store-big'));
    await back.init();
    expect(await back.ingest(await client.fetchBlob(target, desc), { digest: desc.digest, size: desc.size })).toEqual({
      digest: desc.digest,
      size: desc.size,
    });
  });

  it('resolves the right entry of a multi-platform index it pushed', async () => {
    const image = await client.resolve(parseReference(pushed.ref), linux);
    const repo = `${reg.host}/multi/busybox`;
    const byDigest = (d: Digest) => parseReference(`${repo}@${d}`);

    // An arm64/v8 and an arm/v6 sibling: same layer, config with another architecture.
    const variants: Descriptor[] = [];
    for (const [architecture, variant] of [['arm64', 'v8'], ['arm', 'v6']] as const) {
      const configBytes = Buffer.from(JSON.stringify({ ...image.config, architecture, variant }));
      const configDesc = await pushBytes(parseReference(`${repo}:x`), MediaType.OciConfig, configBytes);
      await client.pushBlob(parseReference(`${repo}:x`), image.manifest.layers[0]!, () => store.read(image.manifest.layers[0]!.digest), {
        mountFrom: 'library/busybox',
      });
      const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: image.manifest.layers };
      const bytes = Buffer.from(JSON.stringify(manifest));
      const digest = sha256(bytes);
      expect(await client.pushManifest(byDigest(digest), MediaType.OciManifest, bytes)).toBe(digest);
      variants.push({ mediaType: MediaType.OciManifest, digest, size: bytes.length, platform: { os: 'linux', architecture, variant } });
    }
    await client.pushBlob(parseReference(`${repo}:x`), image.manifest.config, () => store.read(image.manifest.config.digest), {
      mountFrom: 'library/busybox',
    });
    await client.pushManifest(byDigest(image.manifestDigest), image.mediaType, image.manifestBytes);
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { mediaType: image.mediaType, digest: image.manifestDigest, size: image.manifestBytes.length, platform: linux },
        ...variants,
      ],
    };
    const indexBytes = Buffer.from(JSON.stringify(index));
    const indexDigest = await client.pushManifest(parseReference(`${repo}:latest`), MediaType.OciIndex, indexBytes);

    const ref = parseReference(`${repo}:latest`);
    const host = await client.resolve(ref, linux);
    expect(host.manifestDigest).toBe(image.manifestDigest);
    expect(host.indexDigest).toBe(indexDigest);
    expect(host.ref.toString()).toBe(`${repo}:latest@${image.manifestDigest}`);

    const arm64 = await client.resolve(ref, { os: 'linux', architecture: 'arm64' });
    expect(arm64.manifestDigest).toBe(variants[0]!.digest);
    expect(arm64.config.architecture).toBe('arm64');

    // arm/v7 can run the arm/v6 image; nothing can run on windows.
    const armv7 = await client.resolve(ref, { os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(armv7.manifestDigest).toBe(variants[1]!.digest);
    await expect(client.resolve(ref, { os: 'windows', architecture: 'amd64' })).rejects.toThrow(PlatformNotFoundError);
    await expect(client.resolve(ref, { os: 'windows', architecture: 'amd64' })).rejects.toThrow(
      /no image for platform windows\/amd64 in .*available: linux\/amd64, linux\/arm64, linux\/arm\/v6/,
    );

    // Entries without a platform are told apart by their config, as containerd does.
    const unlabeled: ImageIndex = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [variants[0]!, index.manifests[0]!].map(({ platform: _p, ...rest }) => rest),
    };
    await client.pushManifest(parseReference(`${repo}:unlabeled`), MediaType.OciIndex, Buffer.from(JSON.stringify(unlabeled)));
    const picked = await client.resolve(parseReference(`${repo}:unlabeled`), linux);
    expect(picked.manifestDigest).toBe(image.manifestDigest);

    const inspected = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${repo}:latest`]);
    expect(sha256(Buffer.from(inspected.stdout))).toBe(indexDigest);
  });
});

describe('flaky connections and servers', () => {
  const quickRetry = { retries: 3, baseDelayMs: 10 };
  const flakyClient = (): RegistryClient => new RegistryClient({ credentials: new StaticCredentialStore(), retry: quickRetry });

  it('resumes a blob download whose connection drops midway', async () => {
    const image = await client.resolve(parseReference(pushed.ref), linux);
    const layer = image.manifest.layers[0]!;
    expect(layer.size).toBeGreaterThan(200_000);
    const proxy = await faultyProxy(reg.host, { cutAfterBytes: 100_000 });
    const flaky = flakyClient();
    try {
      const ref = parseReference(`${proxy.host}/library/busybox@${image.manifestDigest}`);
      const target = new ContentStore(join(workDir, 'store-flaky'));
      await target.init();
      const got = await target.ingest(await flaky.fetchBlob(ref, layer), { digest: layer.digest, size: layer.size });
      expect(got.digest).toBe(layer.digest);
      expect(proxy.faults()).toBe(1);
      // The rest came as a Range request answered with 206 Partial Content.
      expect(await readFile(reg.logPath, 'utf8')).toContain(`"GET /v2/library/busybox/blobs/${layer.digest} HTTP/1.1" 206`);
    } finally {
      await flaky.close();
      await proxy.close();
    }
  });

  it('retries a 503 (honouring Retry-After) and then succeeds', async () => {
    const proxy = await faultyProxy(reg.host, { fail: (line) => (line.startsWith('GET /v2/library/busybox/manifests/') ? 503 : undefined), failCount: 2 });
    const flaky = flakyClient();
    try {
      const image = await flaky.resolve(parseReference(`${proxy.host}/library/busybox:latest`), linux);
      expect(image.manifestDigest).toBe(pushed.digest);
      expect(proxy.faults()).toBe(2);
    } finally {
      await flaky.close();
      await proxy.close();
    }
  });

  it('gives up after a few retries with the status in the error', async () => {
    const proxy = await faultyProxy(reg.host, { fail: (line) => (line.startsWith('GET /v2/') ? 503 : undefined), failCount: 100 });
    const flaky = flakyClient();
    try {
      await expect(flaky.resolve(parseReference(`${proxy.host}/library/busybox:latest`), linux)).rejects.toThrow(/503 Service Unavailable/);
      expect(proxy.faults()).toBe(quickRetry.retries + 1);
    } finally {
      await flaky.close();
      await proxy.close();
    }
  });

  it('does not retry a client error', async () => {
    const proxy = await faultyProxy(reg.host, { fail: (line) => (line.startsWith('GET /v2/') ? 400 : undefined), failCount: 100 });
    const flaky = flakyClient();
    try {
      await expect(flaky.resolve(parseReference(`${proxy.host}/library/busybox:latest`), linux)).rejects.toThrow(/400 Bad Request/);
      expect(proxy.faults()).toBe(1);
    } finally {
      await flaky.close();
      await proxy.close();
    }
  });

  it('restarts a blob upload whose PUT failed', async () => {
    const proxy = await faultyProxy(reg.host, { fail: (line) => (line.startsWith('PUT /v2/') ? 503 : undefined), failCount: 1 });
    const flaky = flakyClient();
    try {
      const data = randomBytes(300_000);
      const desc: Descriptor = { mediaType: 'application/octet-stream', digest: sha256(data), size: data.length };
      const target = parseReference(`${proxy.host}/retry/upload:latest`);
      let opened = 0;
      await flaky.pushBlob(target, desc, () => {
        opened++;
        return Readable.from([data]);
      });
      expect(proxy.faults()).toBe(1);
      expect(opened).toBe(2);
      expect(await client.hasBlob(parseReference(`${reg.host}/retry/upload:latest`), desc.digest)).toBe(true);
    } finally {
      await flaky.close();
      await proxy.close();
    }
  });
});

describe('large blobs: chunked upload, resumed download, corrupted bytes', () => {
  const quickRetry = { retries: 3, baseDelayMs: 10 };
  const chunked = (): RegistryClient =>
    new RegistryClient({ credentials: new StaticCredentialStore(), retry: quickRetry, chunkedUploadThreshold: 2 << 20, chunkSize: 1 << 20 });
  let data: Buffer;
  let file: string;
  let desc: Descriptor;

  beforeAll(async () => {
    data = randomBytes(5 * 1024 * 1024 + 12345);
    file = join(workDir, 'chunked.bin');
    await writeFile(file, data);
    desc = { mediaType: MediaType.OciLayerGzip, digest: sha256(data), size: data.length };
  });

  it('uploads a blob over the threshold in PATCH chunks, following each Location, and it reads back', async () => {
    const c = chunked();
    try {
      await c.pushBlob(parseReference(`${reg.host}/chunked/blob:latest`), desc, () => createReadStream(file, { highWaterMark: 100_000 }));
      const log = await readFile(reg.logPath, 'utf8');
      expect(log.match(/"PATCH \/v2\/chunked\/blob\/blobs\/uploads\/[^"]+" 202/g)).toHaveLength(6);
      expect(log).toMatch(new RegExp(`"PUT /v2/chunked/blob/blobs/uploads/[^"]*digest=${encodeURIComponent(desc.digest)} HTTP/1.1" 201`));
      const back = new ContentStore(join(workDir, 'store-chunked'));
      await back.init();
      expect(await back.ingest(await c.fetchBlob(parseReference(`${reg.host}/chunked/blob:latest`), desc), desc)).toEqual({ digest: desc.digest, size: desc.size });
    } finally {
      await c.close();
    }
  });

  it('resumes a chunked upload from the offset the registry reports when a PATCH fails', async () => {
    let patches = 0;
    const proxy = await faultyProxy(reg.host, { fail: (line) => (line.startsWith('PATCH ') && ++patches === 3 ? 503 : undefined), failCount: 1 });
    const c = chunked();
    try {
      let opened = 0;
      await c.pushBlob(parseReference(`${proxy.host}/chunked/resumed:latest`), desc, () => {
        opened++;
        return createReadStream(file, { highWaterMark: 64 * 1024 });
      });
      expect(proxy.faults()).toBe(1);
      expect(opened).toBe(2); // the stream is read again up to the registry's offset, not the upload restarted
      const log = await readFile(reg.logPath, 'utf8');
      expect(log.match(/"POST \/v2\/chunked\/resumed\/blobs\/uploads\/ HTTP\/1.1" 202/g)).toHaveLength(1);
      expect(log).toMatch(/"GET \/v2\/chunked\/resumed\/blobs\/uploads\/[^"]+" 204/);
      expect(await client.hasBlob(parseReference(`${reg.host}/chunked/resumed:latest`), desc.digest)).toBe(true);
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  it('completes, verified, a pull whose connection is cut in the middle of a large layer', async () => {
    await client.pushBlob(parseReference(`${reg.host}/chunked/blob:latest`), desc, () => createReadStream(file));
    const proxy = await faultyProxy(reg.host, { cutAfterBytes: 3_000_000 });
    const c = chunked();
    try {
      const target = new ContentStore(join(workDir, 'store-cut'));
      await target.init();
      const got = await target.ingest(await c.fetchBlob(parseReference(`${proxy.host}/chunked/blob:latest`), desc), desc);
      expect(got.digest).toBe(desc.digest);
      expect(proxy.faults()).toBe(1);
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  it('follows a blob redirect to storage on another origin, as Docker Hub answers, and verifies what it gets', async () => {
    await client.pushBlob(parseReference(`${reg.host}/chunked/blob:latest`), desc, () => createReadStream(file));
    const [regHost, regPort] = reg.host.split(':') as [string, string];
    const storageRequests: string[] = [];
    // "Blob storage": serves the registry's blob under a signed-looking URL of its own.
    const storage = createHttpServer((req, res) => {
      storageRequests.push(`${req.url} auth=${req.headers.authorization ?? 'none'}`);
      const up = httpRequest({ host: regHost, port: Number(regPort), path: `/v2/chunked/blob/blobs/${desc.digest}` }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.end();
    });
    // The registry front: every blob GET is redirected (307) to the storage server.
    const front = createHttpServer((req, res) => {
      if (req.method === 'GET' && req.url?.includes('/blobs/sha256:')) {
        res.writeHead(307, { location: `http://127.0.0.1:${(storage.address() as { port: number }).port}/store/${desc.digest.slice(7)}?sig=abc` });
        return void res.end();
      }
      const up = httpRequest({ host: regHost, port: Number(regPort), method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      req.pipe(up);
    });
    await Promise.all([storage, front].map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
    try {
      const target = new ContentStore(join(workDir, 'store-redirect'));
      await target.init();
      const host = `127.0.0.1:${(front.address() as { port: number }).port}`;
      const got = await target.ingest(await client.fetchBlob(parseReference(`${host}/chunked/blob:latest`), desc), desc);
      expect(got).toEqual({ digest: desc.digest, size: desc.size });
      expect(storageRequests).toEqual([`/store/${desc.digest.slice(7)}?sig=abc auth=none`]);
    } finally {
      await Promise.all([storage, front].map((s) => new Promise((resolve) => s.close(resolve))));
    }
  });

  it('refuses a blob with one flipped byte: digest mismatch, and nothing partial in the content store', async () => {
    const proxy = await flippingProxy(reg.host, desc.digest, 4_000_000);
    const c = chunked();
    try {
      const target = new ContentStore(join(workDir, 'store-flipped'));
      await target.init();
      const err = await target
        .ingest(await c.fetchBlob(parseReference(`${proxy.host}/chunked/blob:latest`), desc), { ...desc, source: 'flipped' })
        .then(() => undefined, (e: Error) => e);
      expect(err?.name).toBe('DigestMismatchError');
      expect(err?.message).toContain(`digest mismatch for flipped: expected ${desc.digest}, got sha256:`);
      expect(proxy.flipped()).toBe(1);
      expect(await target.has(desc.digest)).toBe(false);
      expect(await readdir(join(target.root, 'blobs', 'sha256'))).toEqual([]);
      expect(await readdir(join(target.root, 'ingest'))).toEqual([]);
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  it('stops a pull midway when its signal fires (Ctrl-C), leaving no partial blob and no lock', async () => {
    const [regHost, regPort] = reg.host.split(':') as [string, string];
    let onStall = (): void => undefined;
    const firstStall = new Promise<void>((resolve) => (onStall = resolve));
    // Forwards everything, but a layer's body stops after its first bytes, as on a dead link.
    const proxy = createHttpServer((req, res) => {
      const up = httpRequest({ host: regHost, port: Number(regPort), method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        const layer = Number(r.headers['content-length']) > 100_000;
        if (req.method !== 'GET' || !req.url?.includes('/blobs/') || r.statusCode !== 200 || !layer) return void r.pipe(res);
        r.once('data', (first: Buffer) => {
          r.pause();
          res.write(first.subarray(0, 100));
          onStall();
        });
        res.once('close', () => r.destroy());
      });
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const root = join(workDir, 'pull-stopped');
    const controller = new AbortController();
    try {
      const pulling = pull({ ref: `127.0.0.1:${(proxy.address() as { port: number }).port}/library/busybox:latest`, root, signal: controller.signal });
      await firstStall;
      controller.abort(new Error('pull cancelled by SIGINT'));
      await expect(pulling).rejects.toThrow('pull cancelled by SIGINT');
      expect(await readdir(join(root, 'ingest'))).toEqual([]);
      expect(await readdir(root)).not.toContain('lock');
    } finally {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('fails a build whose base layer arrives corrupted, leaving no layer blob behind', async () => {
    const image = await client.resolve(parseReference(pushed.ref), linux);
    const layer = image.manifest.layers[0]!;
    const proxy = await flippingProxy(reg.host, layer.digest, 300_000);
    const ctx = join(workDir, 'flip-ctx');
    const root = join(workDir, 'flip-root');
    try {
      await mkdir(ctx, { recursive: true });
      await writeFile(join(ctx, 'Dockerfile'), `FROM ${proxy.host}/library/busybox:latest\nCOPY Dockerfile /\n`);
      const r = await run(BUILDER_BIN, ['build', '--root', root, '--progress', 'plain', ctx]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`digest mismatch for ${proxy.host.replace(/\./g, '\\.')}/library/busybox:latest@${layer.digest}: expected ${layer.digest}, got sha256:`));
      expect(proxy.flipped()).toBe(1);
      const blobs = await readdir(join(root, 'blobs', 'sha256'));
      expect(blobs).not.toContain(layer.digest.slice(7));
      expect(await readdir(join(root, 'ingest'))).toEqual([]);
    } finally {
      await proxy.close();
    }
  });
});

describe('tag resolution: HEAD, the content cache and the per-build cache', () => {
  it('asks once per client, and with the manifest at hand only HEADs the tag', async () => {
    const held = new Map<string, Buffer>();
    const cache = { get: async (d: Digest) => held.get(d), put: async (d: Digest, b: Buffer) => void held.set(d, b) };
    const repo = `${reg.host}/library/busybox`;
    const count = async (re: RegExp) => ((await readFile(reg.logPath, 'utf8')).match(re) ?? []).length;
    const gets = new RegExp(`"GET /v2/library/busybox/manifests/latest HTTP/1.1" 200`, 'g');
    const heads = new RegExp(`"HEAD /v2/library/busybox/manifests/latest HTTP/1.1" 200`, 'g');

    const first = new RegistryClient({ credentials: new StaticCredentialStore(), contentCache: cache });
    const second = new RegistryClient({ credentials: new StaticCredentialStore(), contentCache: cache });
    try {
      const [g0, h0] = [await count(gets), await count(heads)];
      const a = await first.resolve(parseReference(`${repo}:latest`), linux);
      const b = await first.resolve(parseReference(`${repo}:latest`), linux);
      expect(b).toBe(a);
      expect(await count(gets)).toBe(g0 + 1);
      expect(await count(heads)).toBe(h0 + 1);
      expect(held.get(a.manifestDigest)?.equals(a.manifestBytes)).toBe(true);
      expect(held.get(a.configDigest)?.equals(a.configBytes)).toBe(true);

      // A new build with the manifest and config in its store: one HEAD, no GET, no blob request.
      const c = await second.resolve(parseReference(`${repo}:latest`), linux);
      expect(c.manifestDigest).toBe(a.manifestDigest);
      expect(c.config).toEqual(a.config);
      expect(await count(gets)).toBe(g0 + 1);
      expect(await count(heads)).toBe(h0 + 2);

      // --pull: refresh re-resolves the tag.
      await second.resolve(parseReference(`${repo}:latest`), linux, { refresh: true });
      expect(await count(heads)).toBe(h0 + 3);
    } finally {
      await first.close();
      await second.close();
    }
  });
});

describe('Docker Hub mirrors', () => {
  // No traffic may leave loopback: Docker Hub's name resolves to 127.0.0.1 here (nothing listens on 443).
  const lookup = (_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void): void =>
    opts?.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4);

  it('pulls docker.io images through the first mirror that has them', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const empty = await startRegistry();
    const c = new RegistryClient({
      credentials: new StaticCredentialStore(),
      retry: { retries: 1, baseDelayMs: 10 },
      registryMirrors: [dead, empty.host, `http://${reg.host}/`],
      connect: { lookup },
    });
    try {
      const image = await c.resolve(parseReference('busybox'), linux);
      expect(image.manifestDigest).toBe(pushed.digest);
      expect(image.ref.toString()).toBe(`docker.io/library/busybox:latest@${pushed.digest}`);
      const target = new ContentStore(join(workDir, 'store-mirror'));
      await target.init();
      await pullAll(image, target, c);
      expect(await target.has(image.manifest.layers[0]!.digest)).toBe(true);
      expect(await readFile(empty.logPath, 'utf8')).toMatch(/"GET \/v2\/library\/busybox\/manifests\/latest HTTP\/1.1" 404/);
    } finally {
      await c.close();
      await empty.stop();
    }
  });

  it('falls back to Docker Hub itself when no mirror has the image, and reports its error', async () => {
    const c = new RegistryClient({
      credentials: new StaticCredentialStore(),
      retry: { retries: 1, baseDelayMs: 10 },
      registryMirrors: [reg.host],
      connect: { lookup },
    });
    try {
      await expect(c.resolve(parseReference('library/not-mirrored:1'), linux)).rejects.toThrow(
        /cannot reach registry docker\.io \(https:\/\/registry-1\.docker\.io\): .*ECONNREFUSED/,
      );
    } finally {
      await c.close();
    }
  });
});

describe('HTTPS', () => {
  // A registry serving TLS under a name that is not loopback (so builder insists on HTTPS),
  // resolved to 127.0.0.1 by the client's socket lookup.
  const lookup = (_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void): void =>
    opts?.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4);
  let tlsReg: RunningRegistry;

  beforeAll(async () => {
    tlsReg = await startRegistry({ tls: { hostname: 'registry.test' } });
    await pushBusyboxImage(tlsReg.host, 'library/busybox', 'latest');
  });
  afterAll(async () => tlsReg?.stop());

  it('trusts the CA named by SSL_CERT_FILE, and refuses an unknown CA with a clear error', async () => {
    const port = tlsReg.host.split(':')[1];
    const ref = parseReference(`registry.test:${port}/library/busybox:latest`);
    const trusting = new RegistryClient({ credentials: new StaticCredentialStore(), env: { SSL_CERT_FILE: tlsReg.caPath }, connect: { lookup } });
    const system = new RegistryClient({ credentials: new StaticCredentialStore(), env: {}, connect: { lookup } });
    try {
      const image = await trusting.resolve(ref, linux);
      expect(image.manifest.layers).toHaveLength(1);
      await expect(system.resolve(ref, linux)).rejects.toThrow(
        new RegExp(`cannot reach registry registry\\.test:${port} \\(https://registry\\.test:${port}\\): .*(certificate|self.signed)`, 'i'),
      );
    } finally {
      await trusting.close();
      await system.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------

function sha256(bytes: Buffer): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

async function pushBytes(ref: ReturnType<typeof parseReference>, mediaType: string, bytes: Buffer): Promise<Descriptor> {
  const desc: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length };
  await client.pushBlob(ref, desc, () => Readable.from([bytes]));
  return desc;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A TCP proxy in front of the real registry that injects faults: it kills the first connection
 * whose response passes `cutAfterBytes`, and answers up to `failCount` requests whose request line
 * `fail` picks with that status (then closes the connection) instead of forwarding them.
 */
async function faultyProxy(
  target: string,
  opts: { cutAfterBytes?: number; fail?: (requestLine: string) => number | undefined; failCount?: number },
): Promise<{ host: string; faults(): number; close(): Promise<void> }> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  let faults = 0;
  let cut = false;
  let failed = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((downstream) => {
    const upstream = connect(Number(targetPort), targetHost);
    sockets.add(downstream).add(upstream);
    let relayed = 0;
    const end = (): void => {
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('data', (chunk: Buffer) => {
      const line = chunk.subarray(0, 512).toString('latin1').split('\r\n')[0] ?? '';
      const status = /^[A-Z]+ \/v2\//.test(line) && failed < (opts.failCount ?? 0) ? opts.fail?.(line) : undefined;
      if (status) {
        failed++;
        faults++;
        downstream.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      relayed += chunk.length;
      if (opts.cutAfterBytes !== undefined && !cut && relayed > opts.cutAfterBytes) {
        cut = true;
        faults++;
        downstream.write(chunk.subarray(0, chunk.length - (relayed - opts.cutAfterBytes)));
        end();
        return;
      }
      downstream.write(chunk);
    });
    downstream.on('error', end).on('close', () => upstream.destroy());
    upstream.on('error', end).on('close', () => downstream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    host: `127.0.0.1:${port}`,
    faults: () => faults,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * An HTTP proxy in front of the real registry that flips one byte, at `offset` of the body, of
 * every response to a GET of the blob `digest`.
 */
async function flippingProxy(target: string, digest: Digest, offset: number): Promise<{ host: string; flipped(): number; close(): Promise<void> }> {
  let flipped = 0;
  const server = createHttpServer((req, res) => {
    const upstream = httpRequest({ host: target.split(':')[0], port: Number(target.split(':')[1]), method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (req.method !== 'GET' || !req.url?.endsWith(`/blobs/${digest}`)) {
        up.pipe(res);
        return;
      }
      let seen = 0;
      up.on('data', (chunk: Buffer) => {
        if (seen <= offset && offset < seen + chunk.length) {
          chunk = Buffer.from(chunk);
          chunk[offset - seen] = (chunk[offset - seen] as number) ^ 0xff;
          flipped++;
        }
        seen += chunk.length;
        res.write(chunk);
      });
      up.on('end', () => res.end());
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    host: `127.0.0.1:${port}`,
    flipped: () => flipped,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

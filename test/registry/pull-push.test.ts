// Pull and push against a real distribution registry on 127.0.0.1, with an image made by
// umoci/skopeo and checked back with skopeo.

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
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
      /no image for platform windows\/amd64\/v1 in .*available: linux\/amd64\/v1, linux\/arm64\/v8, linux\/arm\/v6/,
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

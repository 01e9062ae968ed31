// Builds that pull and push through a faulty network: a TCP proxy in front of the real registry
// answers 500 or 429 (with Retry-After), cuts connections in the middle of a blob, or flips a
// byte of an upload. Every build must end in a verified success or a clear error; the registry
// must never hold a tag whose manifest names a missing blob, and the local store must stay sound.
// (test/registry/pull-push.test.ts covers the client alone: resumed downloads, 503s, chunked
// uploads, a corrupted download.)

import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runBuilder } from '../helpers/cli.js';
import { startFaultProxy, type Fault, type ProxiedRequest } from '../helpers/fault-proxy.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { leftBehind, localTags, registryTag } from '../helpers/integrity.js';

const fx = useBuildFixture('registry-faults');
let ctx: string;
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(fx.work, 'tmp-'));
  ctx = join(fx.work, 'ctx');
  await mkdir(ctx, { recursive: true });
  // One layer of 1 MiB that does not compress: its upload is long enough to be cut midway.
  await writeFile(join(ctx, 'data.bin'), randomBytes(1 << 20));
});

/**
 * Builds FROM the base and pushes to `repo`, both through a proxy injecting `pick`'s faults, in a
 * new state directory; returns the result, what the proxy saw, and the registry's view of the tag.
 */
async function buildThrough(repo: string, pick: (req: ProxiedRequest) => Fault | undefined) {
  const proxy = await startFaultProxy(fx.registry.host, pick);
  const root = await mkdtemp(join(fx.work, 'root-'));
  try {
    const dir = join(ctx, repo.replace(/\W/g, '-'));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), `FROM ${fx.base.replace(fx.registry.host, proxy.host)}\nCOPY data.bin /data.bin\n`);
    await writeFile(join(dir, 'data.bin'), randomBytes(1 << 20));
    const tag = `${proxy.host}/${repo}:1`;
    const r = await runBuilder(['build', '--root', root, '--progress', 'plain', '--push', '-t', tag, dir], { env: { TMPDIR: tmp } });
    const remote = await registryTag(fx.registry.host, repo, '1');
    return { r, log: proxy.log, remote, local: localTags(root).includes(tag), left: await leftBehind(root, tmp) };
  } finally {
    await proxy.close();
  }
}

const faults = (log: Array<{ fault?: Fault }>) => log.filter((l) => l.fault).map((l) => l.fault);
const isUpload = (req: ProxiedRequest) => req.method === 'PUT' && req.path.includes('/blobs/uploads/');

describe('pushes through faults', () => {
  it('retries a 500 on each blob upload and pushes a complete image', async () => {
    const { r, log, remote, local, left } = await buildThrough('faults/push-500', (req) => (isUpload(req) && firstUploadOf(req) ? { status: 500 } : undefined));
    expect(r.code, r.stderr).toBe(0);
    expect(faults(log).length).toBeGreaterThanOrEqual(2);
    expect(remote).toMatchObject({ missingBlobs: [] });
    expect(local).toBe(true);
    expect(left).toEqual([]);
  });

  it('waits out a 429 with Retry-After on the manifest and then tags', async () => {
    const { r, log, remote, left } = await buildThrough('faults/push-429', (req) =>
      req.method === 'PUT' && req.path.includes('/manifests/') && req.seen === 1 ? { status: 429, retryAfter: '1' } : undefined,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(log.filter((l) => l.method === 'PUT' && l.path.includes('/manifests/')).map((l) => l.fault)).toEqual([{ status: 429, retryAfter: '1' }, undefined]);
    expect(remote).toMatchObject({ missingBlobs: [] });
    expect(left).toEqual([]);
  });

  it('starts a blob upload again when its connection is cut midway', async () => {
    const { r, log, remote, local, left } = await buildThrough('faults/push-cut', (req) =>
      isUpload(req) && req.length > 500_000 && cutOnce() ? { cutRequestAfter: 300_000 } : undefined,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(faults(log)).toEqual([{ cutRequestAfter: 300_000 }]);
    expect(remote).toMatchObject({ missingBlobs: [] });
    expect(local).toBe(true);
    expect(left).toEqual([]);
  });

  it('fails clearly when the registry refuses an upload whose bytes were corrupted, and tags nothing', async () => {
    const { r, remote, local, left } = await buildThrough('faults/push-flip', (req) => (isUpload(req) ? { flipRequestAt: 500_000 } : undefined));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/ERROR: .*uploading blob sha256:[0-9a-f]{64} to [0-9.:]+\/faults\/push-flip failed: 400 Bad Request \(DIGEST_INVALID/);
    expect(remote).toBeUndefined();
    expect(local).toBe(false);
    expect(left).toEqual([]);
  });

  it('gives up on a registry that keeps failing, with the status in the error, and tags nothing', async () => {
    const { r, log, remote, local, left } = await buildThrough('faults/push-down', (req) => (isUpload(req) ? { status: 500 } : undefined));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/ERROR: .*uploading blob sha256:[0-9a-f]{64} to [0-9.:]+\/faults\/push-down failed: 500 Internal Server Error/);
    expect(faults(log).length).toBeGreaterThan(1);
    expect(remote).toBeUndefined();
    expect(local).toBe(false);
    expect(left).toEqual([]);
  });
});

describe('pulls through faults', () => {
  it('pulls the base through a 500, a 429 and a connection cut in its layer, verified', async () => {
    const { r, log, remote, left } = await buildThrough('faults/pull', (req) => {
      if (req.method === 'GET' && req.path.includes('/manifests/') && req.seen === 1) return { status: 500 };
      if (req.method === 'GET' && req.path.includes('/blobs/') && req.path.includes('/library/busybox/')) {
        if (req.seen === 1) return { status: 429, retryAfter: '1' };
        if (req.seen === 2) return { cutResponseAfter: 200_000 };
      }
      return undefined;
    });
    expect(r.code, r.stderr).toBe(0);
    expect(faults(log)).toEqual(expect.arrayContaining([{ status: 500 }, { status: 429, retryAfter: '1' }, { cutResponseAfter: 200_000 }]));
    expect(remote).toMatchObject({ missingBlobs: [] });
    // The integrity check re-hashes every pulled blob.
    expect(left).toEqual([]);
  });
});

/** True for the first upload PUT of each blob (its digest is in the query). */
const uploadsSeen = new Set<string>();
function firstUploadOf(req: ProxiedRequest): boolean {
  const digest = /digest=([^&]+)/.exec(req.path)?.[1];
  if (!digest || uploadsSeen.has(digest)) return false;
  uploadsSeen.add(digest);
  return true;
}

let cut = false;
/** True the first time only. */
function cutOnce(): boolean {
  if (cut) return false;
  cut = true;
  return true;
}

// A base layer goes from the socket into the content store and into its snapshot in one pass.
// Through a TCP proxy in front of a real registry: a layer whose bytes are corrupted on the way,
// and a pull stopped (Ctrl-C) while its layer is half unpacked, must leave neither blob nor
// snapshot; the same state directory then builds normally.

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import type { ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { createSnapshotter } from '../../src/snapshotter/index.js';
import { busyboxLayout } from '../helpers/base-image.js';
import { startFaultProxy, type Fault, type FaultProxy, type ProxiedRequest } from '../helpers/fault-proxy.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { leftBehind } from '../helpers/integrity.js';
import { unpackOciArchive } from '../helpers/oci-tar.js';

const fx = useBuildFixture('streaming-pull');
let ctx: string;
let layerDigest: string;

beforeAll(async () => {
  ctx = join(fx.work, 'ctx');
  await mkdir(ctx);
  const layout = await busyboxLayout();
  const blob = async <T>(digest: string): Promise<T> => JSON.parse(await readFile(join(layout, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as T;
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as ImageIndex;
  const manifest = await blob<ImageManifest>(index.manifests[0]!.digest);
  layerDigest = manifest.layers[0]!.digest;
  // The layer is large enough for the faults below to land in its middle.
  expect(manifest.layers[0]!.size).toBeGreaterThan(400_000);
});

const isLayerGet = (req: ProxiedRequest): boolean => req.method === 'GET' && req.path.endsWith(`/blobs/${layerDigest}`);

/** A cold build FROM the busybox base pulled through a proxy injecting `pick`'s faults, with RUN on top. */
async function buildThrough(root: string, pick: (req: ProxiedRequest) => Fault | undefined, signal?: AbortSignal): Promise<{ image: string; proxy: FaultProxy; done: Promise<unknown> }> {
  const proxy = await startFaultProxy(fx.registry.host, pick);
  await writeFile(join(ctx, 'Dockerfile'), `FROM ${proxy.host}/library/busybox:latest\nRUN echo ran > /ran\n`);
  const image = join(fx.work, `image-${Date.now()}.tar`);
  const done = build({ context: ctx, root, network: 'none', tags: ['streamed:test'], outputs: [{ type: 'oci', dest: image }], signal });
  done.catch(() => undefined); // awaited by the test, maybe after other checks
  return { image, proxy, done };
}

/** What a failed or stopped pull must not leave: the layer's blob, any snapshot, any leftover. */
async function expectNothingKept(root: string): Promise<void> {
  expect(existsSync(join(root, 'blobs', 'sha256', layerDigest.slice(7))), 'layer blob').toBe(false);
  expect(await (await createSnapshotter(root)).list(), 'snapshots').toEqual([]);
  expect(await leftBehind(root)).toEqual([]);
}

describe('a base layer unpacked while it downloads', () => {
  it('a layer corrupted on the way fails the build with the digest mismatch, keeps nothing, and the next build succeeds', async () => {
    const root = await mkdtemp(join(fx.work, 'corrupt-'));
    // One byte flipped in the middle of the layer's gzip stream, on its first download only.
    const { proxy, done } = await buildThrough(root, (req) => (isLayerGet(req) && req.seen === 1 ? { flipResponseAt: 300_000 } : undefined));
    try {
      await expect(done).rejects.toThrow(new RegExp(`digest mismatch for .*${layerDigest}`));
      expect(proxy.log.filter((l) => l.fault)).toEqual([expect.objectContaining({ fault: { flipResponseAt: 300_000 } })]);
    } finally {
      await proxy.close();
    }
    await expectNothingKept(root);

    const again = await buildThrough(root, () => undefined);
    try {
      await again.done;
    } finally {
      await again.proxy.close();
    }
    const fs = await unpackOciArchive(again.image, fx.work, 'corrupt-then-good');
    expect(await readFile(join(fs, 'ran'), 'utf8')).toBe('ran\n');
    expect(existsSync(join(fs, 'bin', 'busybox'))).toBe(true);
  });

  it('Ctrl-C while the layer is half downloaded and half unpacked keeps nothing', async () => {
    const root = await mkdtemp(join(fx.work, 'interrupt-'));
    const stop = new AbortController();
    // The first download is cut after 300 kB (already flowing into the snapshot); its resume is held.
    const { proxy, done } = await buildThrough(
      root,
      (req) => (isLayerGet(req) ? (req.seen === 1 ? { cutResponseAfter: 300_000 } : { stall: true }) : undefined),
      stop.signal,
    );
    try {
      await proxy.stalled();
      // The unpack had begun: an uncommitted snapshot holds part of the layer.
      const sn = await createSnapshotter(root);
      expect((await sn.list()).map((s) => s.kind)).toEqual(['active']);
      stop.abort(Object.assign(new Error('interrupted'), { name: 'AbortError' }));
      await expect(done).rejects.toThrow();
    } finally {
      proxy.release();
      await proxy.close();
    }
    await expectNothingKept(root);
  });
});

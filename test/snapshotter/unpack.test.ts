import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Digest } from '../../src/oci/types.js';
import { MediaType } from '../../src/oci/types.js';
import { createSnapshotter, unpackLayer, type LocalSnapshotter } from '../../src/snapshotter/index.js';
import { tempDir } from './helpers.js';

let dir: { path: string; cleanup(): Promise<void> };
beforeEach(async () => {
  dir = await tempDir('builder-unpack-');
});
afterEach(() => dir.cleanup());

it('Ctrl-C while the snapshot is being prepared fails the unpack, leaves no snapshot, and does not end the process', async () => {
  const sn = await createSnapshotter(join(dir.path, 'root'), 'native');
  // The real snapshotter, whose prepare is held until the download has been stopped.
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const slow = new Proxy(sn, {
    get(target, prop) {
      if (prop === 'prepare') return async (key: string, parent?: string) => (await held, target.prepare(key, parent));
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as LocalSnapshotter;
  const blob = new PassThrough();
  const stop = new AbortController();
  const layer = { digest: `sha256:${'a'.repeat(64)}` as Digest, diffID: `sha256:${'b'.repeat(64)}` as Digest, mediaType: MediaType.OciLayerGzip };
  const unpacking = unpackLayer(slow, 'L1', undefined, layer, blob, { signal: stop.signal });
  stop.abort(new Error('build cancelled by SIGINT'));
  // The blob's error is emitted meanwhile, before anything reads it.
  await new Promise((resolve) => setImmediate(resolve));
  release();
  await expect(unpacking).rejects.toThrow();
  expect(await sn.list()).toEqual([]);
});

// The image config's times, as BuildKit's exporter sets them: a rebuild from the cache must give
// the same image, so new history entries take the times their layers were made, not the build's.

import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LayerRecord } from '../../src/cache/cache-index.js';
import { ContentStore } from '../../src/cache/content-store.js';
import type { Digest, ImageSpec } from '../../src/definition/index.js';
import { assembleImage } from '../../src/exporter/image.js';

const layer = (n: number, createdAt?: string): LayerRecord => ({
  diffID: `sha256:${String(n).repeat(64)}` as Digest,
  digest: `sha256:${String(n).repeat(64)}` as Digest,
  size: 10,
  mediaType: 'application/vnd.oci.image.layer.v1.tar',
  ...(createdAt !== undefined && { createdAt }),
});
const vertex = (n: number) => `sha256:${'v'.repeat(63)}${n}` as Digest;
const BASE = '2020-01-01T00:00:00Z';
const T1 = '2026-01-01T10:00:00.000Z';
const T2 = '2026-01-02T10:00:00.000Z';
const BUILD = '2026-06-01T00:00:00.000Z';

function spec(history: ImageSpec['history']): ImageSpec {
  return { platform: { os: 'linux', architecture: 'amd64' }, config: {}, history } as unknown as ImageSpec;
}

describe('assembleImage: times', () => {
  let dir: string;
  let store: ContentStore;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'image-times-'));
    store = new ContentStore(dir);
    await store.init();
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  // FROM base (one layer) / ENV / COPY / RUN / CMD
  const history = spec([
    { created: BASE, created_by: 'base layer' },
    { created_by: 'ENV A=1', vertex: vertex(1) },
    { created_by: 'COPY a /a', vertex: vertex(2) },
    { created_by: 'RUN make', vertex: vertex(3) },
    { created_by: 'CMD ["a"]', vertex: vertex(4) },
  ] as ImageSpec['history']);
  const added = new Set([vertex(2), vertex(3)]);

  it('new entries take their layer times; entries without a layer take the one before, or the first new one', async () => {
    const image = await assembleImage(store, { spec: history, layers: [layer(0), layer(1, T1), layer(2, T2)], addedLayer: added, created: BUILD });
    expect(image.config.history!.map((h) => [h.created_by, h.created, h.empty_layer ?? false])).toEqual([
      ['base layer', BASE, false],
      ['ENV A=1', T1, true],
      ['COPY a /a', T1, false],
      ['RUN make', T2, false],
      ['CMD ["a"]', T2, true],
    ]);
    expect(image.config.created).toBe(T2);
  });

  it('the same layers give the same image, whenever it is assembled', async () => {
    const opts = { spec: history, layers: [layer(0), layer(1, T1), layer(2, T2)], addedLayer: added };
    const first = await assembleImage(store, { ...opts, created: BUILD });
    const later = await assembleImage(store, { ...opts, created: '2027-01-01T00:00:00.000Z' });
    expect(later.configDescriptor.digest).toBe(first.configDescriptor.digest);
  });

  it('a fixed time (SOURCE_DATE_EPOCH) is the image time; a layer without a time takes the build time', async () => {
    const fixed = await assembleImage(store, { spec: history, layers: [layer(0), layer(1, T1), layer(2, T2)], addedLayer: added, created: BUILD, fixed: true });
    expect(fixed.config.created).toBe(BUILD);
    const untimed = await assembleImage(store, { spec: history, layers: [layer(0), layer(1), layer(2)], addedLayer: added, created: BUILD });
    expect(untimed.config.history!.map((h) => h.created)).toEqual([BASE, BUILD, BUILD, BUILD, BUILD]);
  });

  it('a base entry without a time takes the time its layer was stored here, the same in every rebuild', async () => {
    const stored = await store.putBytes('a base layer');
    const base: LayerRecord = { diffID: stored.digest, ...stored, mediaType: 'application/vnd.oci.image.layer.v1.tar' };
    const storedAt = (await stat(store.path(stored.digest))).mtime.toISOString();
    const untimedBase = spec([{ created_by: 'base layer' }, ...history.history.slice(1)] as ImageSpec['history']);
    const opts = { spec: untimedBase, layers: [base, layer(1, T1), layer(2, T2)], addedLayer: added };
    const first = await assembleImage(store, { ...opts, created: BUILD });
    expect(first.config.history!.map((h) => h.created)).toEqual([storedAt, T1, T1, T2, T2]);
    const later = await assembleImage(store, { ...opts, created: '2027-01-01T00:00:00.000Z' });
    expect(later.configDescriptor.digest).toBe(first.configDescriptor.digest);
  });

  it('SOURCE_DATE_EPOCH: no time after the epoch from the first entry that is not the base image as it came', async () => {
    const stored = await store.putBytes('another base layer');
    const base: LayerRecord = { diffID: stored.digest, ...stored, mediaType: 'application/vnd.oci.image.layer.v1.tar' };
    const EPOCH = '2025-01-01T00:00:00Z';
    const LATER = '2025-06-01T00:00:00Z';
    // Two base layers: the first with a time after the epoch (kept: the base's own entry), the
    // second without one (this state directory's time, clamped), then a metadata entry of the base
    // with a time before the epoch (kept) and the Dockerfile's own entries (at the epoch).
    const partlyTimed = spec([
      { created: LATER, created_by: 'base layer 1' },
      { created_by: 'base layer 2' },
      { created: BASE, created_by: 'base CMD', empty_layer: true },
      { created: EPOCH, created_by: 'COPY a /a', vertex: vertex(2) },
      { created: EPOCH, created_by: 'CMD ["a"]', vertex: vertex(4) },
    ] as ImageSpec['history']);
    const opts = { spec: partlyTimed, layers: [layer(0, LATER), base, layer(1, T1)], addedLayer: new Set([vertex(2)]), created: EPOCH, fixed: true };
    const fixed = await assembleImage(store, opts);
    expect(fixed.config.history!.map((h) => h.created)).toEqual([LATER, EPOCH, BASE, EPOCH, EPOCH]);
    expect(fixed.config.created).toBe(EPOCH);
    // Without the epoch, the second base entry keeps the time its layer was stored here.
    const loose = await assembleImage(store, { ...opts, created: BUILD, fixed: false });
    expect(loose.config.history![1]!.created).toBe((await stat(store.path(stored.digest))).mtime.toISOString());
  });
});

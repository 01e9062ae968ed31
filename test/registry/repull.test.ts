// A tag re-pushed at the registry and picked up by `build --pull` names the new image in the
// local store from then on: later builds without --pull use it (and its cache), not the image the
// tag named before. The re-pushed image here has the same layers in another manifest format, so
// nothing needs downloading: the case where the name used to stay behind.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import type { ImageIndex } from '../../src/oci/types.js';
import type { ProgressEvent, StepEvent } from '../../src/progress.js';
import { pushBusyboxImage } from '../helpers/base-image.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('repull');

it('a re-pulled base replaces the old one for good', async () => {
  const first = await pushBusyboxImage(fx.registry.host, 'team/rebased', '1');
  const ctx = join(fx.work, 'ctx');
  const root = join(fx.work, 'root');
  await mkdir(ctx);
  await writeFile(join(ctx, 'Dockerfile'), `FROM ${first.ref}\nRUN echo built > /built\n`);
  const run = async (pull: boolean) => {
    const events: ProgressEvent[] = [];
    await build({ context: ctx, root, network: 'none', pull, tags: ['app:1'], onProgress: (e) => events.push(e) });
    const steps = events.filter((e): e is StepEvent => e.type === 'step' && e.name.startsWith('['));
    const from = steps.find((e) => / FROM /.test(e.name))?.name ?? '';
    return { from, ranRun: steps.some((e) => / RUN /.test(e.name) && e.status === 'started') };
  };
  const named = async () => {
    const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as ImageIndex;
    return index.manifests.filter((d) => d.annotations?.['org.opencontainers.image.ref.name'] === first.ref).map((d) => d.digest);
  };

  expect((await run(false)).from).toContain(`@${first.digest}`);
  expect(await named()).toEqual([first.digest]);

  const second = await pushBusyboxImage(fx.registry.host, 'team/rebased', '1', { format: 'v2s2' });
  expect(second.digest).not.toBe(first.digest);
  const pulled = await run(true);
  expect(pulled.from).toContain(`@${second.digest}`);
  expect(await named()).toEqual([second.digest]);

  // From now on, without --pull: the new base, every step cached on it.
  for (let i = 0; i < 2; i++) {
    const again = await run(false);
    expect(again.from, `build ${i + 1} after the pull`).toContain(`@${second.digest}`);
    expect(again.ranRun, `build ${i + 1} after the pull ran its RUN step`).toBe(false);
  }
  expect(await named()).toEqual([second.digest]);
});

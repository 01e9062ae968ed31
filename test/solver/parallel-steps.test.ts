// Independent RUN steps run at the same time, however few cores the machine has: a step that
// sleeps (or waits on the network) does not need one. Real runc containers; each step records
// when it started and ended by the kernel's clock (/proc/uptime is not namespaced), and the
// image built from all of them shows whether they overlapped.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { unpackOciArchive } from '../helpers/oci-tar.js';

const fx = useBuildFixture('parallel-steps');
const STAGES = ['s1', 's2', 's3', 's4'];

it('four independent sleeping RUN steps are all running at one moment, on any number of cores', async () => {
  const ctx = join(fx.work, 'ctx');
  await mkdir(ctx);
  const stamp = (file: string) => `read t rest < /proc/uptime && echo $t > /${file}`;
  const dockerfile = [
    ...STAGES.flatMap((s) => [`FROM ${fx.base} AS ${s}`, `RUN ${stamp('start')} && sleep 3 && ${stamp('end')} && echo ${s} > /name`]),
    'FROM scratch',
    ...STAGES.map((s) => `COPY --from=${s} /start /end /name /${s}/`),
    '',
  ].join('\n');
  await writeFile(join(ctx, 'Dockerfile'), dockerfile);
  const dest = join(fx.work, 'image.tar');
  await build({ context: ctx, root: join(fx.work, 'root'), network: 'none', tags: ['parallel:test'], outputs: [{ type: 'oci', dest }] });
  const fs = await unpackOciArchive(dest, fx.work, 'image');

  const read = async (s: string, file: string) => Number((await readFile(join(fs, s, file), 'utf8')).trim());
  const starts = await Promise.all(STAGES.map((s) => read(s, 'start')));
  const ends = await Promise.all(STAGES.map((s) => read(s, 'end')));
  // Four different steps (identical ones would be one vertex, run once).
  for (const s of STAGES) expect(await readFile(join(fs, s, 'name'), 'utf8')).toBe(`${s}\n`);
  // All four were running at once: the last one started before the first one ended. Run two at a
  // time, the third would start only once one of the first two had ended.
  expect(Math.max(...starts), `starts ${starts.join(' ')}, ends ${ends.join(' ')}`).toBeLessThan(Math.min(...ends));
});

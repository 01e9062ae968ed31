// Files with holes through a real build: a COPY of a sparse context file, an ADD of an archive
// holding one and a RUN that makes one (`truncate -s`) cost their data on disk, not their size,
// in the snapshots and the stored layers, with either snapshotter, while the files read back
// exactly as in the source.

import { spawnSync } from 'node:child_process';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('sparse');
const SIZE = 64 * 1024 * 1024;

/** Bytes allocated under `dir`, as `du` counts them (hardlinks once). */
function diskUsage(dir: string): number {
  const r = spawnSync('du', ['-s', '--block-size=1', dir], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return Number(r.stdout.split('\t')[0]);
}

describe.each(['overlayfs', 'native'] as const)('a build with sparse files (%s)', (snapshotter) => {
  it('stores the data of COPY-ed, ADD-ed and RUN-made sparse files, not their size', async () => {
    const ctx = join(fx.work, `ctx-${snapshotter}`);
    await mkdir(ctx, { recursive: true });
    const fh = await open(join(ctx, 'big'), 'w');
    await fh.truncate(SIZE);
    await fh.write('tail\n', SIZE);
    await fh.close();
    // gzip makes the zeros small; GNU tar without --sparse stores them as plain data.
    const tar = spawnSync('tar', ['-C', ctx, '-czf', join(ctx, 'big.tar.gz'), 'big'], { encoding: 'utf8' });
    expect(tar.status, tar.stderr).toBe(0);
    await writeFile(
      join(ctx, 'Dockerfile'),
      `FROM ${fx.base}
COPY big /copied
ADD big.tar.gz /unpacked/
RUN truncate -s ${SIZE} /made && echo end >> /made
RUN for f in /copied /unpacked/big; do [ "$(stat -c %s $f)" = ${SIZE + 5} ] && [ "$(tail -c 5 $f)" = tail ] || exit 1; done && [ "$(tail -c 4 /made)" = end ]
`,
    );
    const root = join(fx.work, `root-${snapshotter}`);
    await build({ context: ctx, root, network: 'none', snapshotter, tags: [`sparse-${snapshotter}:test`] });
    // Three 64 MiB files, each in a snapshot and a stored layer tar (and, natively, in the copies
    // of the tree later steps ran in): dense, that is more than 384 MiB.
    expect(diskUsage(root)).toBeLessThan(32 * 1024 * 1024);
  });
});

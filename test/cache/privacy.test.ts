// The state directory holds every image's files and configs, setuid binaries included: no other
// local user may reach into it (CVE-2021-41091). Checked as the real user `nobody`.

import { spawnSync } from 'node:child_process';
import { chmod, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('privacy');

/** Runs a shell command as `nobody`; its output and exit status. */
function asNobody(command: string): { status: number | null; out: string } {
  const r = spawnSync('su', ['nobody', '-s', '/bin/sh', '-c', command], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;

beforeAll(async () => {
  // The scratch directory is private to root; the state directory's parent must not be, as
  // /var/lib is not, or nothing would be tested.
  await chmod(fx.work, 0o755);
});

it('another local user cannot list the state directory, read its blobs or run a setuid binary from a snapshot', async () => {
  const ctx = join(fx.work, 'suid-ctx');
  const root = join(fx.work, 'suid-root');
  await mkdir(ctx);
  // The host's `id`, dynamically linked against the host's libc, so `nobody` can run it in place.
  spawnSync('cp', ['/usr/bin/id', join(ctx, 'id')]);
  await writeFile(
    join(ctx, 'Dockerfile'),
    `FROM ${fx.base}
COPY --chmod=4755 id /usr/local/bin/id-suid
USER nobody
RUN test "$(id -u)" = 65534 && echo ran as nobody > /tmp/proof
`,
  );
  const result = await build({ context: ctx, root, network: 'none' });

  expect(await mode(root)).toBe(0o700);
  // The setuid copy exists in a snapshot tree, as root sees it.
  let suid: string | undefined;
  for (const id of await readdir(join(root, 'snapshots'))) {
    const p = join(root, 'snapshots', id, 'fs/usr/local/bin/id-suid');
    if (await stat(p).then((s) => (s.mode & 0o4000) !== 0, () => false)) suid = p;
  }
  expect(suid).toBeDefined();

  const listing = asNobody(`ls ${root}`);
  expect(listing.status).not.toBe(0);
  expect(listing.out).toMatch(/Permission denied/);
  const config = asNobody(`cat ${join(root, 'blobs/sha256', result.configDigest.slice('sha256:'.length))}`);
  expect(config.status).not.toBe(0);
  expect(config.out).not.toContain('"rootfs"');
  const escalated = asNobody(`${suid} -u`);
  expect(escalated.status).not.toBe(0);
  expect(escalated.out).toMatch(/Permission denied/);
  expect(escalated.out.trim()).not.toBe('0');
});

it('an existing state directory that others can enter is made private on first use, and builds in it still work', async () => {
  const ctx = join(fx.work, 'open-ctx');
  const root = join(fx.work, 'open-root');
  await mkdir(ctx);
  await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nRUN echo one > /one\n`);
  const first = await build({ context: ctx, root, network: 'none' });
  // As an older builder (or a careless chmod) left it.
  await chmod(root, 0o755);
  expect(asNobody(`cat ${join(root, 'blobs/sha256', first.configDigest.slice('sha256:'.length))}`).status).toBe(0);

  await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nRUN echo one > /one\nRUN echo two > /two\n`);
  const second = await build({ context: ctx, root, network: 'none' });
  expect(await mode(root)).toBe(0o700);
  expect(asNobody(`cat ${join(root, 'blobs/sha256', first.configDigest.slice('sha256:'.length))}`).status).not.toBe(0);
  expect(second.config.rootfs.diff_ids).toHaveLength(3);
  expect(second.config.rootfs.diff_ids.slice(0, 2)).toEqual(first.config.rootfs.diff_ids);
});

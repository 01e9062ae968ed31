// `builder du`, `builder prune` and the collection after a build, on a real store: images built
// from a registry base, a name moved to a newer image (its old layers now cache only), an OCI
// export (compressed copies and a manifest nothing names), a cache mount, and a build running
// while prune starts. Figures are checked against `du` of the directories.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import { doctor } from '../../src/client/doctor.js';
import { du } from '../../src/client/du.js';
import { prune } from '../../src/client/prune.js';
import { events, runBuilder, startBuilder, stepsByStatus, waitForStderr } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('store-gc');

/** `du -s` in bytes: `apparent` sizes (-b) or blocks on disk (-B1). */
function duBytes(path: string, apparent: boolean): number {
  return Number(execFileSync('du', ['-s', apparent ? '-b' : '-B1', path], { encoding: 'utf8' }).split('\t')[0]);
}

function names(root: string): string[] {
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
  return index.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name'] ?? '').sort();
}

async function build(root: string, ctx: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', ...args, ctx], { env: { BUILDER_GC_KEEP_STORAGE: '0', SOURCE_DATE_EPOCH: '1700000000', ...env } });
  expect(r.code, r.stderr).toBe(0);
  return r;
}

async function expectDoctorClean(root: string): Promise<void> {
  const report = await doctor({ root });
  expect(report.issues).toEqual([]);
}

it('du adds up, prune removes exactly what no image needs, waits for a running build, and GC keeps the newest', async () => {
  const root = join(fx.work, 'root');
  const ctx = join(fx.work, 'ctx');
  await mkdir(ctx);
  await writeFile(
    join(ctx, 'Dockerfile'),
    `FROM ${fx.base}\nARG V\nRUN echo "$V" > /v && head -c 20000 /dev/urandom > /noise\nRUN --mount=type=cache,target=/c echo "$V" >> /c/log\n`,
  );
  await build(root, ctx, ['--build-arg', 'V=a', '-t', 'app:a']);
  await build(root, ctx, ['--build-arg', 'V=old', '-t', 'app:b']);
  // The name moves: the old image's layers are now held by cache records only.
  await build(root, ctx, ['--build-arg', 'V=b', '-t', 'app:b', '-o', `type=oci,dest=${join(fx.work, 'b.tar')}`]);

  // --- du: every figure against the directories ---
  const u = await du({ root });
  const blobsDir = join(root, 'blobs', 'sha256');
  expect(u.blobs.size).toBe(duBytes(blobsDir, true) - statSync(blobsDir).size);
  expect(u.blobs.image + u.blobs.cacheOnly + u.blobs.unreferenced).toBe(u.blobs.size);
  expect(u.blobs.cacheOnly).toBeGreaterThan(20000); // the old app:b's noise layer
  expect(u.blobs.unreferenced).toBeGreaterThan(0); // the export's compressed manifest
  const snapshotDirs = readdirSync(join(root, 'metadata'))
    .map((n) => JSON.parse(readFileSync(join(root, 'metadata', n), 'utf8')) as { id: string; kind: string })
    .filter((m) => m.kind === 'committed')
    .map((m) => join(root, 'snapshots', m.id, 'fs'));
  expect(u.snapshots.count).toBe(snapshotDirs.length);
  expect(u.snapshots.size).toBe(snapshotDirs.reduce((n, d) => n + duBytes(d, false), 0));
  expect(u.cacheMounts.count).toBe(1);
  expect(u.cacheMounts.size).toBe(readdirSync(join(root, 'cache-mounts')).reduce((n, d) => n + duBytes(join(root, 'cache-mounts', d), false), 0));
  expect(u.total).toBe(u.blobs.size + u.snapshots.size + u.cacheMounts.size);
  expect(u.images.count).toBe(3); // app:a, app:b and the base FROM pulled
  expect(u.reclaimable.prune).toBeGreaterThan(20000);
  expect(u.reclaimable.all).toBeGreaterThan(u.reclaimable.prune);
  const sumOf = (kind: string) => u.entries.filter((e) => e.kind === kind).reduce((n, e) => n + e.size, 0);
  expect(sumOf('blob')).toBe(u.blobs.size);
  expect(sumOf('snapshot')).toBe(u.snapshots.size);
  const cli = await runBuilder(['du', '--verbose', '--root', root]);
  expect(cli.code, cli.stderr).toBe(0);
  expect(cli.stdout).toMatch(/^Snapshots\s+\d+/m);
  expect(cli.stdout).toMatch(/^cache-mount\s+\/c\s/m); // the cache's id is its target
  expect(cli.stdout).toMatch(/^Reclaimable:/m);

  // --- prune --filter until=1h: everything was used within the hour ---
  let r = await runBuilder(['prune', '-f', '--filter', 'until=1h', '--root', root]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout.trim()).toBe('Total:\t0B');

  // --- prune: the old app:b's records, layers and snapshots, and the loose manifest go ---
  r = await runBuilder(['prune', '-f', '--root', root]);
  expect(r.code, r.stderr).toBe(0);
  const after = await du({ root });
  // What the cache alone keeps now: the compressed copies of the images' layers, made for the export.
  const copies = readdirSync(join(root, 'compressed', 'gzip')).map((n) => readFileSync(join(root, 'compressed', 'gzip', n), 'utf8').trim().slice(7));
  expect(after.blobs.cacheOnly).toBe(copies.reduce((n, hex) => n + statSync(join(blobsDir, hex)).size, 0));
  expect(after.blobs.unreferenced).toBe(0);
  expect(after.blobs.image).toBe(u.blobs.image);
  expect(after.cacheMounts.count).toBe(1); // only --all or --cache-mounts removes them
  expect(r.stdout).toMatch(/^cache-record\s+sha256:/m);
  expect(u.total - after.total).toBeGreaterThan(20000);
  expect(names(root)).toHaveLength(3);
  expect(names(root)).toEqual(expect.arrayContaining(['docker.io/library/app:a', 'docker.io/library/app:b']));
  await expectDoctorClean(root);
  // Images keep their cache: rebuilding app:a runs nothing.
  const again = await build(root, ctx, ['--build-arg', 'V=a', '-t', 'app:a']);
  expect(stepsByStatus(again.stderr).ran.filter((s) => / RUN /.test(s))).toEqual([]);

  // --- prune --cache-mounts: the cache directory goes too ---
  r = await runBuilder(['prune', '-f', '--cache-mounts', '--root', root]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/^cache-mount\s+\/c\s/m);
  expect(readdirSync(join(root, 'cache-mounts'))).toEqual([]);

  // --- prune down to a size (library API): least recently used first, stopping under the limit ---
  const full = await du({ root });
  const limit = full.total - 1;
  const down = await prune({ root, all: true, keepStorage: limit });
  expect(down.removed.length).toBeGreaterThan(0);
  const left = await du({ root });
  expect(left.total).toBeLessThanOrEqual(limit);
  expect(full.total - left.total).toBe(down.freed);
  // Without its last removal it would have stayed over the limit: nothing went needlessly.
  expect(left.total + down.removed.at(-1)!.size).toBeGreaterThan(limit);
  const newestRemoved = Math.max(...down.removed.map((e) => e.lastUsed.getTime()));
  for (const e of left.entries.filter((e) => e.kind === 'snapshot' || e.kind === 'cache-mount')) expect(e.lastUsed.getTime()).toBeGreaterThanOrEqual(newestRemoved);
  await expectDoctorClean(root);

  // --- a prune started during a build waits for it, then runs ---
  await writeFile(join(ctx, 'Dockerfile.slow'), `FROM ${fx.base}\nRUN sleep 2 && echo slow > /slow\n`);
  const slow = startBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', '-f', join(ctx, 'Dockerfile.slow'), '-t', 'app:slow', ctx], { env: { BUILDER_GC_KEEP_STORAGE: '0' } });
  await waitForStderr(slow, (s) => events(s).some((e) => e.type === 'step' && e.status === 'started' && / RUN sleep/.test(e.name)), 'the RUN step starting');
  const pruning = startBuilder(['prune', '-f', '--all', '--root', root]);
  const [built, pruned] = await Promise.all([slow.closed, pruning.closed]);
  expect(built.code, built.stderr).toBe(0);
  expect(pruned.code, pruned.stderr).toBe(0);
  expect(pruned.stderr).toMatch(/waiting for the build of PID \d+ to finish/);
  expect(names(root)).toContain('docker.io/library/app:slow');
  await expectDoctorClean(root);

  // --- GC after a build that ran something: over the limit, the least recently used goes first ---
  await build(root, ctx, ['--build-arg', 'V=c', '-t', 'app:c']);
  const store = new ContentStore(root);
  const old = await store.putBytes('x'.repeat(5000)); // nothing names it, unused for a week
  const week = new Date(Date.now() - 7 * 86400_000);
  await utimes(store.path(old.digest), week, week);
  const before = await du({ root });
  const keep = before.total - 1;
  const gc = await build(root, ctx, ['--build-arg', 'V=d', '-t', 'app:d'], { BUILDER_GC_KEEP_STORAGE: String(keep) });
  expect(gc.stderr).toMatch(/garbage collection: the state directory held more than .*; removed \d+ least recently used entries/);
  expect(await store.has(old.digest)).toBe(false);
  const afterGc = await du({ root });
  expect(afterGc.total).toBeLessThanOrEqual(keep);
  // The newest stays: app:d rebuilds from the cache, and every image is whole.
  const cached = await build(root, ctx, ['--build-arg', 'V=d', '-t', 'app:d'], { BUILDER_GC_KEEP_STORAGE: String(keep) });
  expect(stepsByStatus(cached.stderr).ran.filter((s) => / RUN /.test(s))).toEqual([]);
  expect(cached.stderr).not.toMatch(/garbage collection/); // a fully cached build skips it
  await expectDoctorClean(root);
  // Far over the limit: everything but what image names hold goes, and the images stay whole.
  await build(root, ctx, ['--build-arg', 'V=e', '-t', 'app:e'], { BUILDER_GC_KEEP_STORAGE: '1' });
  const floor = await du({ root });
  expect(floor.blobs.cacheOnly + floor.blobs.unreferenced + floor.snapshots.size + floor.cacheMounts.size).toBe(0);
  expect(floor.images.count).toBe(afterGc.images.count + 1);
  await expectDoctorClean(root);
  // Every image is whole for another tool: skopeo copies each, checking every blob's digest.
  for (const name of names(root).filter((n) => n.includes('/app:'))) {
    execFileSync('skopeo', ['copy', '-q', `oci:${root}:${name}`, `oci:${join(fx.work, 'copies')}:${name.slice(name.lastIndexOf(':') + 1)}`]);
  }
});

it('refuses bad prune flags naming them, and prunes nothing unconfirmed', async () => {
  const root = join(fx.work, 'flags-root');
  const cases: Array<[string[], RegExp]> = [
    [['--keep-storage', 'lots'], /^ERROR: invalid --keep-storage: invalid value for size: "lots"/],
    [['--filter', 'until=1d'], /^ERROR: invalid --filter until: invalid duration "1d"/],
    [['--filter', 'type=regular'], /^ERROR: invalid --filter "type=regular": the only filter is until=DURATION/],
  ];
  for (const [args, message] of cases) {
    const r = await runBuilder(['prune', '-f', '--root', root, ...args]);
    expect(r.code, args.join(' ')).toBe(2);
    expect(r.stderr).toMatch(message);
  }
  // Without -f and without a terminal to ask on: nothing happens.
  const ctx = join(fx.work, 'flags-ctx');
  await mkdir(ctx);
  await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nRUN echo x > /x\n`);
  await build(root, ctx, ['-t', 'app:x']);
  const before = await du({ root });
  const r = await runBuilder(['prune', '--all', '--root', root]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/Not confirmed \(no terminal\): use -f/);
  expect((await du({ root })).total).toBe(before.total);
});

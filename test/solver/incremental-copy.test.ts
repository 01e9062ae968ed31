// Incremental COPY: a COPY of the context that ran before on the same parent re-uses the files of
// its earlier result that did not change (hard links into the new snapshot, their content in the
// layer copied from the earlier layer). After each edit of the context, a build in the state
// directory that keeps those earlier results must give exactly the image a build in a fresh state
// directory gives: same layers, same manifest.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, chown, link, mkdir, readdir, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { setAttribute } from 'fs-xattr';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeCopyRecord } from '../../src/cache/copy-record.js';
import { ContentStore } from '../../src/cache/content-store.js';
import { build } from '../../src/client/build.js';
import { sha256 } from '../../src/oci/digest.js';
import { createSnapshotter, writeLayer } from '../../src/snapshotter/index.js';
import type { ProgressEvent, StepEvent } from '../../src/progress.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('incremental-copy');
const EPOCH = 1_700_000_000;

/** A small source tree: nested directories, an executable, a symlink, a .dockerignore. */
async function makeContext(ctx: string, dockerfile: string): Promise<void> {
  await mkdir(join(ctx, 'src', 'lib', 'deep'), { recursive: true });
  await mkdir(join(ctx, 'docs'), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(join(ctx, 'src', 'lib', `m${i}.js`), `export const v${i} = ${i};\n`.repeat(i + 1));
  await writeFile(join(ctx, 'src', 'lib', 'deep', 'x.txt'), 'deep\n');
  await writeFile(join(ctx, 'src', 'main.js'), 'console.log("main");\n');
  await writeFile(join(ctx, 'run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
  await writeFile(join(ctx, 'docs', 'a.md'), '# a\n');
  await writeFile(join(ctx, 'docs', 'b.md'), '# b\n');
  await symlink('lib/m1.js', join(ctx, 'src', 'current.js'));
  await writeFile(join(ctx, '.dockerignore'), 'Dockerfile\n*.log\n');
  await writeFile(join(ctx, 'Dockerfile'), dockerfile);
}

/** Edits of the context, each followed by an incremental and a fresh build. */
const EDITS: Array<[string, (ctx: string) => Promise<void>]> = [
  ['change a file', (ctx) => writeFile(join(ctx, 'src', 'lib', 'm3.js'), 'export const v3 = "changed";\n')],
  ['add a file', (ctx) => writeFile(join(ctx, 'src', 'lib', 'deep', 'new.js'), 'new\n')],
  ['delete a file', (ctx) => unlink(join(ctx, 'docs', 'b.md'))],
  ['chmod a file', (ctx) => chmod(join(ctx, 'src', 'main.js'), 0o700)],
  ['rename a file', (ctx) => rename(join(ctx, 'src', 'lib', 'm5.js'), join(ctx, 'src', 'lib', 'renamed.js'))],
  ['retarget a symlink', async (ctx) => {
    await unlink(join(ctx, 'src', 'current.js'));
    await symlink('lib/m2.js', join(ctx, 'src', 'current.js'));
  }],
  ['touch a file (mtime only)', (ctx) => utimes(join(ctx, 'docs', 'a.md'), new Date(), new Date(Date.now() + 5000))],
  ['exclude a file in .dockerignore', (ctx) => writeFile(join(ctx, '.dockerignore'), 'Dockerfile\n*.log\nsrc/lib/m7.js\n')],
  ['add an ignored file and a directory', async (ctx) => {
    await writeFile(join(ctx, 'debug.log'), 'ignored\n');
    await mkdir(join(ctx, 'src', 'fresh'));
    await writeFile(join(ctx, 'src', 'fresh', 'f.js'), 'fresh\n');
  }],
  ['hard-link a file to a new name', (ctx) => link(join(ctx, 'src', 'lib', 'm8.js'), join(ctx, 'src', 'lib', 'm8-again.js'))],
  ['set an xattr (metadata only)', (ctx) => setAttribute(join(ctx, 'src', 'lib', 'm9.js'), 'user.note', 'noted')],
  ['chown a file (metadata only)', (ctx) => chown(join(ctx, 'src', 'lib', 'm10.js'), 1234, 5678)],
  ['replace a directory with a file', async (ctx) => {
    await rm(join(ctx, 'src', 'lib', 'deep'), { recursive: true });
    await writeFile(join(ctx, 'src', 'lib', 'deep'), 'now a file\n');
  }],
  ['replace a file with a directory', async (ctx) => {
    await rm(join(ctx, 'src', 'lib', 'deep'));
    await mkdir(join(ctx, 'src', 'lib', 'deep'));
    await writeFile(join(ctx, 'src', 'lib', 'deep', 'again.txt'), 'again\n');
  }],
  ['change a file back to what it was first', (ctx) => writeFile(join(ctx, 'src', 'lib', 'm3.js'), 'export const v3 = 3;\n'.repeat(4))],
  ['delete a directory', (ctx) => rm(join(ctx, 'docs'), { recursive: true })],
];

/** A change of metadata that COPY does not carry (mtimes, owners, xattrs) keeps the cache. */
function keepsCache(edit: string): boolean {
  return /\((mtime|metadata) only\)/.test(edit);
}

/** Regular files of the snapshots under `dir` that another snapshot shares: what an incremental COPY links. */
function linkedFiles(dir: string): number {
  let n = 0;
  for (const snapshot of readdirSync(dir)) {
    // Names per inode within the snapshot: a hard-linked pair of the context is no sharing.
    const names = new Map<number, { nlink: number; seen: number }>();
    for (const entry of readdirSync(join(dir, snapshot), { withFileTypes: true, recursive: true })) {
      if (!entry.isFile()) continue;
      const st = statSync(join(entry.parentPath, entry.name));
      const known = names.get(st.ino) ?? { nlink: st.nlink, seen: 0 };
      known.seen++;
      names.set(st.ino, known);
    }
    for (const { nlink, seen } of names.values()) if (nlink > seen) n++;
  }
  return n;
}

/** Every committed snapshot that builder made in `root` (not the base image's) still diffs to its ChainID. */
async function expectSnapshotsIntact(root: string, sourceDateEpoch: number | undefined): Promise<void> {
  const sn = await createSnapshotter(root);
  const store = new ContentStore(join(root, 'rediff'));
  await store.init();
  const snapshots = (await sn.list()).filter((s) => s.kind === 'committed' && (s.parent !== undefined || sourceDateEpoch === undefined));
  expect(snapshots.length).toBeGreaterThanOrEqual(EDITS.filter(([edit]) => !keepsCache(edit)).length);
  for (const s of snapshots) {
    const { diffID } = await writeLayer(await sn.layout(s.key), store, { sourceDateEpoch });
    expect(s.parent === undefined ? diffID : sha256(`${s.parent} ${diffID}`), s.key).toBe(s.key);
  }
}

function ranCopies(events: ProgressEvent[]): string[] {
  return events.filter((e): e is StepEvent => e.type === 'step' && e.status === 'started' && /\bCOPY /.test(e.name)).map((e) => e.name);
}

describe.each([
  {
    // The second COPY replaces files of the first: clearing their paths leaves overlay whiteouts.
    what: 'with SOURCE_DATE_EPOCH, on a base image: same manifest',
    dockerfile: () => `FROM ${fx.base}\nWORKDIR /app\nCOPY src/ ./src/\nCOPY . .\n`,
    sourceDateEpoch: EPOCH,
  },
  {
    what: 'without SOURCE_DATE_EPOCH, from scratch: same layers (the times are the sources\')',
    dockerfile: () => 'FROM scratch\nCOPY . /\n',
    sourceDateEpoch: undefined,
  },
  {
    what: 'with the native snapshotter: same manifest',
    dockerfile: () => `FROM ${fx.base}\nWORKDIR /app\nCOPY src/ ./src/\nCOPY . .\n`,
    sourceDateEpoch: EPOCH,
    snapshotter: 'native' as const,
  },
])('incremental COPY $what', ({ dockerfile, sourceDateEpoch, snapshotter }) => {
  it('gives the image a fresh state directory gives, after each edit of the context', async () => {
    const name = snapshotter ?? (sourceDateEpoch === undefined ? 'scratch' : 'epoch');
    const ctx = join(fx.work, name, 'ctx');
    const kept = join(fx.work, name, 'kept');
    await makeContext(ctx, dockerfile());
    // Files changed within 2 s before a copy are never linked by the next one (their stat key is
    // racy: see reuse.ts); the context's unchanged files must be older than that to be linked.
    await new Promise((r) => setTimeout(r, 2100));
    const opts = { context: ctx, network: 'none' as const, sourceDateEpoch, snapshotter, tags: [`${name}:test`] };
    const first = await build({ ...opts, root: kept });
    const fresh = join(fx.work, name, 'fresh');
    let previous = first.manifestDigest;
    for (const [edit, apply] of EDITS) {
      await apply(ctx);
      const events: ProgressEvent[] = [];
      const incremental = await build({ ...opts, root: kept, onProgress: (e) => events.push(e) });
      // Every step runs again there, so its COPY starts from nothing (the base image stays).
      const cold = await build({ ...opts, root: fresh, noCache: true });
      const touch = edit.startsWith('touch');
      // An edit that keeps the cache keeps the layer made before it; a touch changes that
      // layer's mtime, which only SOURCE_DATE_EPOCH makes the fresh one's.
      if (!touch || sourceDateEpoch !== undefined) expect(incremental.config.rootfs.diff_ids, edit).toEqual(cold.config.rootfs.diff_ids);
      if (sourceDateEpoch !== undefined) expect(incremental.manifestDigest, edit).toBe(cold.manifestDigest);
      if (keepsCache(edit)) expect(ranCopies(events), edit).toEqual([]);
      else {
        expect(ranCopies(events).length, edit).toBeGreaterThan(0);
        if (sourceDateEpoch !== undefined) expect(incremental.manifestDigest, edit).not.toBe(previous);
      }
      previous = incremental.manifestDigest;
    }
    // The unchanged files were linked, not copied again.
    expect(linkedFiles(join(kept, 'snapshots'))).toBeGreaterThan(20);
    // The fresh builds never had an earlier result to link.
    expect(linkedFiles(join(fresh, 'snapshots'))).toBe(0);
    // Linking never changed an earlier result: each snapshot still diffs to the layer it was committed as.
    await expectSnapshotsIntact(kept, sourceDateEpoch);
    const records = (await readdir(join(kept, 'cache', 'copies'))).filter((f) => f.endsWith('.copy'));
    expect(records.length).toBeGreaterThan(0);
    for (const file of records) {
      const record = decodeCopyRecord(readFileSync(join(kept, 'cache', 'copies', file)));
      expect(record?.files.size, file).toBeGreaterThan(0);
      // The next edit's layer takes the unchanged files' content from this one (see layer-splice.ts).
      const entries = record?.layer?.entries ?? [];
      expect(entries.length, file).toBe(3 * (record?.files.size ?? 0));
      expect(entries.filter((n, i) => i % 3 === 0 && n >= 0).length, file).toBeGreaterThan(0);
    }
  });
});

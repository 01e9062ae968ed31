// CopyReuse on plain directories: which earlier files an incremental COPY links, and what it
// copies from the source instead (an earlier file that differs, or is reached through a symlink).

import { lstatSync, readFileSync, utimesSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CopyReuse, writeCopiedFile } from '../../../src/solver/file/index.js';
import { walk } from '../../../src/util/select.js';

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'builder-reuse-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const ROOT = { uid: 0, gid: 0 };
// The sources are written just before they are copied: seen from a clock a minute later, their
// stat keys are not racy (see the last test), so an unchanged one is linked.
const aMinuteLater = () => Date.now() + 60_000;

/**
 * Runs one copy of `src` into `dest` the way copySources does for regular files, with `reuse`;
 * `dirTimes` runs where copySources sets directory times, before the snapshot is unmounted.
 */
function copyWith(reuse: CopyReuse, src: string, dest: string, dirTimes = () => {}): ReturnType<CopyReuse['finish']> {
  for (const entry of walk(src, '.')) {
    if (entry.type !== 'file') continue;
    const st = lstatSync(entry.abs);
    const mode = entry.mode & 0o7777;
    const host = join(dest, entry.rel);
    if (!reuse.defer(entry.rel, host, entry, ROOT, mode)) writeCopiedFile(entry.abs, st, host, ROOT, mode);
  }
  dirTimes();
  return reuse.finish(dest, writeCopiedFile);
}

it('links unchanged files of the earlier copy and copies the rest from the source', async () => {
  const src = join(work, 'src');
  const first = join(work, 'first');
  const second = join(work, 'second');
  for (const d of [src, first, second]) await mkdir(join(d, 'sub'), { recursive: true });
  await writeFile(join(src, 'same.txt'), 'same\n');
  await writeFile(join(src, 'edited.txt'), 'v1\n');
  await writeFile(join(src, 'sub', 'deep.txt'), 'deep\n');
  const earlier = new CopyReuse(undefined, aMinuteLater);
  copyWith(earlier, src, first);

  await writeFile(join(src, 'edited.txt'), 'v2\n');
  // The earlier result lost its mode on one file: it must not be linked (a fresh copy has 0644).
  await chmod(join(first, 'sub', 'deep.txt'), 0o600);
  const dirTime = new Date('2020-01-01T00:00:00Z');
  const reuse = new CopyReuse({ dir: first, files: earlier.written }, aMinuteLater);
  const linked = copyWith(reuse, src, second, () => utimesSync(join(second, 'sub'), dirTime, dirTime));

  const ino = (p: string) => lstatSync(p).ino;
  expect(ino(join(second, 'same.txt'))).toBe(ino(join(first, 'same.txt')));
  // Only the linked file is reported, with the lstat of the file it now is.
  expect([...linked.keys()]).toEqual(['same.txt']);
  const now = lstatSync(join(second, 'same.txt'));
  const { dev, ino: inode, mode, uid, gid, size, blocks, mtimeMs, rdev } = now;
  expect({ ...linked.get('same.txt') }).toMatchObject({ dev, ino: inode, mode, uid, gid, size, blocks, mtimeMs, rdev });
  expect(linked.get('same.txt')?.isFile()).toBe(true);
  expect(ino(join(second, 'edited.txt'))).not.toBe(ino(join(first, 'edited.txt')));
  expect(readFileSync(join(second, 'edited.txt'), 'utf8')).toBe('v2\n');
  expect(readFileSync(join(first, 'edited.txt'), 'utf8')).toBe('v1\n');
  expect(ino(join(second, 'sub', 'deep.txt'))).not.toBe(ino(join(first, 'sub', 'deep.txt')));
  expect(lstatSync(join(second, 'sub', 'deep.txt')).mode & 0o7777).toBe(0o644);
  // Linking into a directory does not move its time.
  expect(lstatSync(join(second, 'sub')).mtimeMs).toBe(dirTime.getTime());
  // What this copy wrote is what the next one compares with: every file, in its version now.
  const written = reuse.written;
  expect(Array.from({ length: written.size }, (_, i) => written.path(i))).toEqual(['edited.txt', 'same.txt', 'sub/deep.txt']);
  for (const e of walk(src, '.')) {
    if (e.type !== 'file') continue;
    expect(written.matches(written.indexOf(e.rel), e.rel, e, 0o644, ROOT)).toBe(true);
    expect(written.matches(written.indexOf(e.rel), e.rel, e, 0o600, ROOT)).toBe(false);
    expect(earlier.written.matches(earlier.written.indexOf(e.rel), e.rel, e, 0o644, ROOT)).toBe(e.rel !== 'edited.txt');
  }
});

it('never links an earlier file reached through a symlink, nor one that is gone', async () => {
  const src = join(work, 'src');
  const first = join(work, 'first');
  const elsewhere = join(work, 'elsewhere');
  const second = join(work, 'second');
  for (const d of [src, first, elsewhere, second]) await mkdir(join(d, 'sub'), { recursive: true });
  await writeFile(join(src, 'sub', 'a.txt'), 'a\n');
  await writeFile(join(src, 'b.txt'), 'b\n');
  const earlier = new CopyReuse(undefined, aMinuteLater);
  copyWith(earlier, src, first);
  // The earlier tree's `sub` now leads outside it, to a file that looks right.
  await rm(join(first, 'sub'), { recursive: true });
  await writeFile(join(elsewhere, 'sub', 'a.txt'), 'a\n');
  const srcTimes = lstatSync(join(src, 'sub', 'a.txt'));
  utimesSync(join(elsewhere, 'sub', 'a.txt'), srcTimes.atime, srcTimes.mtime);
  await symlink(join(elsewhere, 'sub'), join(first, 'sub'));
  await rm(join(first, 'b.txt'));
  copyWith(new CopyReuse({ dir: first, files: earlier.written }, aMinuteLater), src, second);
  expect(lstatSync(join(second, 'sub', 'a.txt')).nlink).toBe(1);
  expect(lstatSync(join(second, 'b.txt')).nlink).toBe(1);
  expect(readFileSync(join(second, 'b.txt'), 'utf8')).toBe('b\n');
});

it('copies again a file that changed just before the earlier copy read it: it may have changed again within the same tick', async () => {
  const src = join(work, 'src');
  const first = join(work, 'first');
  const second = join(work, 'second');
  for (const d of [src, first, second]) await mkdir(d, { recursive: true });
  await writeFile(join(src, 'a.txt'), 'v1\n');
  const earlier = new CopyReuse();
  copyWith(earlier, src, first);
  // Same size, and (as a rewrite within one coarse clock tick would leave them) the same stat key.
  const st = lstatSync(join(src, 'a.txt'));
  const reuse = new CopyReuse({ dir: first, files: earlier.written });
  const linked = copyWith(reuse, src, second);
  expect(lstatSync(join(src, 'a.txt')).ctimeMs).toBe(st.ctimeMs);
  expect([...linked.keys()]).toEqual([]);
  expect(lstatSync(join(second, 'a.txt')).ino).not.toBe(lstatSync(join(first, 'a.txt')).ino);
});

import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { selectSources } from '../../../src/util/select.js';
import { copySources } from '../../../src/solver/file/copy.js';
import { resolveInRoot } from '../../../src/util/scoped-path.js';

let src: string;
let dest: string;
let outside: string;
beforeEach(async () => {
  src = await mkdtemp(join(tmpdir(), 'builder-copy-src-'));
  dest = await mkdtemp(join(tmpdir(), 'builder-copy-dest-'));
  outside = await mkdtemp(join(tmpdir(), 'builder-copy-outside-'));
  await mkdir(join(src, 'dir/sub'), { recursive: true });
  await writeFile(join(src, 'dir/one.txt'), '1');
  await writeFile(join(src, 'dir/sub/two.txt'), '2', { mode: 0o600 });
  await symlink('one.txt', join(src, 'dir/link'));
  await writeFile(join(src, 'file.txt'), 'f');
});
afterEach(async () => {
  for (const d of [src, dest, outside]) await rm(d, { recursive: true, force: true });
});

async function copy(patterns: string[], to: string, extra: { owner?: { uid: number; gid: number }; chmod?: number } = {}) {
  await copySources({ srcRoot: src, sources: await selectSources(src, patterns), destRoot: dest, dest: to, ...extra });
}

describe('COPY semantics', () => {
  it('a directory source copies its contents, keeping modes and symlinks', async () => {
    await copy(['dir'], '/app');
    expect((await readdir(join(dest, 'app'))).sort()).toEqual(['link', 'one.txt', 'sub']);
    expect(await readlink(join(dest, 'app/link'))).toBe('one.txt');
    expect((await stat(join(dest, 'app/sub/two.txt'))).mode & 0o777).toBe(0o600);
  });

  it('keeps files that are hardlinked to each other hardlinked', async () => {
    await link(join(src, 'dir/one.txt'), join(src, 'dir/sub/also-one.txt'));
    await copy(['dir'], '/app');
    const [a, b] = await Promise.all([stat(join(dest, 'app/one.txt')), stat(join(dest, 'app/sub/also-one.txt'))]);
    expect(b.ino).toBe(a.ino);
    expect(a.nlink).toBe(2);
    expect(await readFile(join(dest, 'app/sub/also-one.txt'), 'utf8')).toBe('1');
    // Copied again over itself: still one file with two names.
    await copy(['dir'], '/app');
    expect((await stat(join(dest, 'app/sub/also-one.txt'))).ino).toBe((await stat(join(dest, 'app/one.txt'))).ino);
    // A file copied over one name of a hardlinked pair replaces that name only.
    await copy(['file.txt'], '/app/one.txt');
    expect(await readFile(join(dest, 'app/one.txt'), 'utf8')).toBe('f');
    expect(await readFile(join(dest, 'app/sub/also-one.txt'), 'utf8')).toBe('1');
  });

  it('a file goes into the destination when it ends with / or is an existing directory', async () => {
    await copy(['file.txt'], '/etc/conf/');
    expect(await readFile(join(dest, 'etc/conf/file.txt'), 'utf8')).toBe('f');
    await copy(['file.txt'], '/etc');
    expect(await readFile(join(dest, 'etc/file.txt'), 'utf8')).toBe('f');
    await copy(['file.txt'], '/renamed.txt');
    expect(await readFile(join(dest, 'renamed.txt'), 'utf8')).toBe('f');
  });

  it('lands a directory source at the clean path of a destination written with `.`, `..` and repeated slashes', async () => {
    await copy(['dir'], '/srv/./x/..//app//');
    expect((await readdir(join(dest, 'srv/app'))).sort()).toEqual(['link', 'one.txt', 'sub']);
    expect(await readFile(join(dest, 'srv/app/sub/two.txt'), 'utf8')).toBe('2');
    await copy(['.'], '//');
    expect(await readFile(join(dest, 'dir/sub/two.txt'), 'utf8')).toBe('2');
    expect(await readFile(join(dest, 'file.txt'), 'utf8')).toBe('f');
  });

  it('sets owner and mode when asked (--chown, --chmod), on files and created directories', async () => {
    await copy(['dir'], '/srv/data', { owner: { uid: 1000, gid: 1001 }, chmod: 0o640 });
    const f = await stat(join(dest, 'srv/data/one.txt'));
    expect([f.uid, f.gid, f.mode & 0o777]).toEqual([1000, 1001, 0o640]);
    const created = await stat(join(dest, 'srv'));
    expect([created.uid, created.gid]).toEqual([1000, 1001]);
  });

  it('a context file gets 0:0 and its own mode, setuid and sparse files too, and a setgid directory of the image does not lend its group', async () => {
    await writeFile(join(src, 'dir/suid'), '#!/bin/sh\n', { mode: 0o755 });
    await chmod(join(src, 'dir/suid'), 0o4755);
    await writeFile(join(src, 'dir/sub/sparse'), 'end', { mode: 0o751 });
    await truncate(join(src, 'dir/sub/sparse'), 8 << 20);
    await chown(join(src, 'dir/one.txt'), 1234, 1234);
    // The image's /shared: setgid, group 4321; a file created in it would take that group.
    await mkdir(join(dest, 'shared'));
    await chown(join(dest, 'shared'), 0, 4321);
    await chmod(join(dest, 'shared'), 0o2775);
    await copy(['dir'], '/shared', { owner: { uid: 0, gid: 0 } });
    const owners = async (path: string) => {
      const st = await lstat(join(dest, 'shared', path));
      return [st.uid, st.gid, (st.mode & 0o7777).toString(8)];
    };
    expect(await owners('suid')).toEqual([0, 0, '4755']);
    expect(await owners('one.txt')).toEqual([0, 0, '644']);
    expect(await owners('sub/sparse')).toEqual([0, 0, '751']);
    expect(await owners('sub/two.txt')).toEqual([0, 0, '600']);
    expect(await owners('sub')).toEqual([0, 0, '755']);
    // The same into a new directory of the copy's own making (no setgid bit).
    await copy(['dir'], '/app', { owner: { uid: 0, gid: 0 } });
    expect((await lstat(join(dest, 'app/suid'))).mode & 0o7777).toBe(0o4755);
    expect((await lstat(join(dest, 'app/sub/sparse'))).mode & 0o7777).toBe(0o751);
  });

  it('copies many files with their times, a later source overwriting what an earlier one wrote', async () => {
    const mtime = new Date('2021-05-06T07:08:09Z');
    await mkdir(join(src, 'a'));
    await mkdir(join(src, 'b'));
    for (let i = 0; i < 50; i++) await writeFile(join(src, 'a', `f${i}`), `a${i}`);
    // The last files of the first source (byte order: …, f8, f9), one of them slow to copy, are
    // the first the second source overwrites.
    await writeFile(join(src, 'a/f9'), Buffer.alloc(16 << 20, 1));
    for (const i of [8, 9]) await writeFile(join(src, 'b', `f${i}`), `b${i}`, { mode: 0o600 });
    await utimes(join(src, 'a/f7'), mtime, mtime);
    // A directory whose files are the last of the walk: its time is set once they are all written.
    await mkdir(join(src, 'b/sub'));
    for (let i = 0; i < 20; i++) await writeFile(join(src, 'b/sub', `s${i}`), `s${i}`);
    await utimes(join(src, 'b/sub'), mtime, mtime);
    await copy(['a', 'b'], '/out/');
    expect((await stat(join(dest, 'out/sub'))).mtimeMs).toBe(mtime.getTime());
    expect((await readdir(join(dest, 'out'))).length).toBe(51);
    expect(await readFile(join(dest, 'out/f1'), 'utf8')).toBe('a1');
    for (const i of [8, 9]) {
      expect(await readFile(join(dest, `out/f${i}`), 'utf8')).toBe(`b${i}`);
      expect((await stat(join(dest, `out/f${i}`))).mode & 0o777).toBe(0o600);
    }
    expect((await stat(join(dest, 'out/f7'))).mtimeMs).toBe(mtime.getTime());
  });

  it('never follows a symlink of the destination image out of its root', async () => {
    await symlink(outside, join(dest, 'escape'));
    await symlink('/../../..', join(dest, 'up'));
    await copy(['file.txt'], '/escape/');
    await copy(['file.txt'], '/up/tmp/x.txt');
    expect(await readdir(outside)).toEqual([]);
    expect((await lstat(join(dest, 'tmp/x.txt'))).isFile()).toBe(true);
    expect(await resolveInRoot(dest, '/escape/a')).toBe(join(dest, outside, 'a'));
  });
});

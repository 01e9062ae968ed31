import { lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BLOCKS, CTIME_MS, DEV, GID, INO, lstatEntry, lstatNumbers, MODE, MTIME_MS, NLINK, RDEV, SIZE, UID } from '../../src/util/lstat-numbers.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'builder-lstat-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** What fs.lstatSync says of `path`, in lstatNumbers' fields. */
function expected(path: string): number[] {
  const st = lstatSync(path);
  return [st.mode, st.uid, st.gid, st.size, st.mtimeMs, st.ctimeMs, st.nlink, st.ino, st.dev, st.rdev, st.blocks];
}

function numbers(path: string): number[] {
  const n = lstatNumbers(path);
  return [n[MODE]!, n[UID]!, n[GID]!, n[SIZE]!, n[MTIME_MS]!, n[CTIME_MS]!, n[NLINK]!, n[INO]!, n[DEV]!, n[RDEV]!, n[BLOCKS]!];
}

describe('lstatNumbers', () => {
  it('gives what fs.lstatSync gives for files, directories, symlinks (not followed), fifos and hardlinks', () => {
    writeFileSync(join(dir, 'file'), 'content');
    mkdirSync(join(dir, 'dir'), { mode: 0o750 });
    symlinkSync('file', join(dir, 'link'));
    symlinkSync('missing', join(dir, 'dangling'));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    execFileSync('ln', [join(dir, 'file'), join(dir, 'hardlink')]);
    // Times with sub-millisecond parts, and before the epoch: the same floats as Node's.
    utimesSync(join(dir, 'file'), 1_700_000_000.123456, 1_700_000_000.987654);
    utimesSync(join(dir, 'dir'), -1.5, -1.5);
    for (const name of ['file', 'dir', 'link', 'dangling', 'fifo', 'hardlink', '.']) {
      expect(numbers(join(dir, name)), name).toEqual(expected(join(dir, name)));
      // lstatEntry: the same numbers under Stats' names, and the same answers to its type tests.
      const st = lstatSync(join(dir, name));
      const entry = lstatEntry(join(dir, name))!;
      expect({ ...entry }, name).toEqual({ dev: st.dev, ino: st.ino, mode: st.mode, nlink: st.nlink, uid: st.uid, gid: st.gid, rdev: st.rdev, size: st.size, blocks: st.blocks, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
      for (const test of ['isFile', 'isDirectory', 'isSymbolicLink', 'isCharacterDevice', 'isBlockDevice', 'isFIFO'] as const) expect(entry[test](), `${name} ${test}`).toBe(st[test]());
    }
    expect(lstatEntry(join(dir, 'missing'))).toBeUndefined();
    expect(lstatEntry(join(dir, 'file', 'below'))).toBeUndefined();
  });

  it('sees a rewrite of the same size (mtime, ctime) at once', () => {
    const file = join(dir, 'file');
    writeFileSync(file, 'aaaa');
    const before = numbers(file);
    writeFileSync(file, 'bbbb');
    utimesSync(file, 1, 1);
    const after = numbers(file);
    expect(after).toEqual(expected(file));
    expect(after[MTIME_MS]).not.toBe(before[MTIME_MS]);
  });

  it('throws as fs.lstatSync does for a missing path and a file used as a directory', () => {
    writeFileSync(join(dir, 'file'), '');
    for (const path of [join(dir, 'missing'), join(dir, 'file', 'below')]) {
      let theirs: NodeJS.ErrnoException | undefined;
      try {
        lstatSync(path);
      } catch (err) {
        theirs = err as NodeJS.ErrnoException;
      }
      expect(() => lstatNumbers(path)).toThrow(expect.objectContaining({ code: theirs!.code, message: theirs!.message, path }));
    }
  });
});

import { lstatSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compareBytes, dockerignoreFilter, selectSources, SourceNotFoundError, walk } from '../../src/util/select.js';

let dir: string;
const TREE = { 'src/a.js': 'a', 'src/lib/b.js': 'b', 'package.json': '{}', 'debug.log': 'log' };
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'builder-select-'));
  for (const [path, content] of Object.entries(TREE)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('selecting COPY sources', () => {
  it('expands wildcards with Docker rules and rejects missing or excluded paths', async () => {
    const names = async (patterns: string[]) => (await selectSources(dir, patterns)).map((s) => s.name);
    expect(await names(['src/*.js'])).toEqual(['src/a.js']);
    expect(await names(['*.json', '/package.json'])).toEqual(['package.json']);
    await expect(selectSources(dir, ['missing.txt'])).rejects.toBeInstanceOf(SourceNotFoundError);
    await expect(selectSources(dir, ['debug.log'], dockerignoreFilter(['*.log']))).rejects.toThrow('"/debug.log" not found');
  });

  it('walks a tree thousands of levels deep (no recursion tied to depth)', async () => {
    const deep = Array.from({ length: 1500 }, () => 'd').join('/');
    // mkdir -p through a path longer than PATH_MAX needs relative steps.
    let here = dir;
    for (const part of deep.split('/').reduce<string[][]>((acc, c, i) => (i % 100 === 0 ? [...acc, [c]] : (acc[acc.length - 1]!.push(c), acc)), [])) {
      await mkdir(join(here, ...part), { recursive: true });
      here = join(here, ...part);
    }
    const count = [...walk(dir, '.')].length;
    expect(count).toBe(1 + 4 + 1500 + 2);
  });
});

describe('walking a source', () => {
  it('lists entries in byte order, names past U+D7FF too, each with its lstat', async () => {
    const names = ['b', '\u{1F600}', '\uE000', 'a', 'A', 'é'];
    await mkdir(join(dir, 'n'));
    for (const n of names) await writeFile(join(dir, 'n', n), n);
    await symlink('a', join(dir, 'n', 'link'));
    const entries = [...walk(dir, 'n')];
    const byBytes = [...names, 'link'].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(entries.map((e) => e.rel)).toEqual(['n', ...byBytes.map((n) => `n/${n}`)]);
    for (const e of entries) {
      const st = lstatSync(join(dir, e.rel));
      expect([e.abs, e.type, e.stats.ino, e.size, e.mode]).toEqual([join(dir, e.rel), e.rel === 'n' ? 'dir' : e.rel === 'n/link' ? 'symlink' : 'file', st.ino, st.size, st.mode]);
    }
  });
});

describe('.dockerignore in a walk', () => {
  it('excludes what the matcher excludes path by path, also where a directory settles its subtree', async () => {
    const files = ['a/b/c.txt', 'a/b/keep', 'a/x.log', 'a/b/d/e.log', 'node_modules/m/index.js', 'node_modules/m/x.log', 'src/main.log', 'src/b/c', 'd/e/f/g', 'd/e/h', 'xy', 'important.txt', 'docs/a b/c.md'];
    for (const f of files) {
      await mkdir(dirname(join(dir, f)), { recursive: true });
      await writeFile(join(dir, f), f);
    }
    const patternSets = [
      ['node_modules', '*.log'],
      ['*/b', '!a/b/keep'],
      ['a', '!a/b/c.txt'],
      ['a/*/c*', 'x?'],
      ['**/*.log', '!src/**'],
      ['d/e', '!d/e/f/g'],
      ['src/', '/node_modules/m', '# a comment', ' #not a comment'],
      ['*.txt', '!important.txt', 'docs/a b'],
      ['a|b', '*/*/d'],
      ['!', 'a/[b]/c.txt', 'src\\/b'],
      ['./a/../src/b', 'node_modules/*/x.log', '!node_modules/m'],
    ];
    for (const patterns of patternSets) {
      const filter = dockerignoreFilter(patterns)!;
      const walked = [...walk(dir, '.', filter)].map((e) => e.rel);
      // Each path on its own: excluded by the matcher, or below a directory excluded without exceptions.
      const all = [...walk(dir, '.')].map((e) => e.rel).filter((rel) => rel !== '.');
      const expected = all.filter((rel) => !filter.excluded(rel) && (filter.hasExceptions || !rel.split('/').some((_, i, parts) => i > 0 && filter.excluded(parts.slice(0, i).join('/')))));
      expect({ patterns, walked }).toEqual({ patterns, walked: ['.', ...expected] });
    }
  });
});

describe('compareBytes', () => {
  it('orders names by their UTF-8 bytes, past U+D800 too (where UTF-16 order differs)', () => {
    const names = ['b', '\u{1F600}', 'a-b', '\uE000', 'a', 'A', 'é', 'a.b', '\uFFFD'];
    const byBytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect([...names].sort(compareBytes)).toEqual(byBytes);
    expect(byBytes.indexOf('\uE000')).toBeLessThan(byBytes.indexOf('\u{1F600}'));
    expect(compareBytes('x', 'x')).toBe(0);
  });
});

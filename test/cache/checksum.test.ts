import { chmod, chown, mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { checkStatCacheFile, checksumSources, StatCache } from '../../src/cache/checksum.js';
import { FileList } from '../../src/solver/explain.js';
import { dockerignoreFilter, selectSources, walk, type KeptWalk, type WalkEntry } from '../../src/util/select.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'builder-checksum-'));
  await mkdir(join(dir, 'src/lib'), { recursive: true });
  await writeFile(join(dir, 'src/a.js'), 'a');
  await writeFile(join(dir, 'src/lib/b.js'), 'b');
  await writeFile(join(dir, 'package.json'), '{}');
  await writeFile(join(dir, 'debug.log'), 'log');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

// The files are written just before they are hashed: seen from a clock a minute later they are
// not racy (see the racy test below), so the stat cache keeps them.
const aMinuteLater = { now: () => Date.now() + 60_000 };

async function sum(patterns: string[], exclude: string[] = [], statCache = StatCache.memory()): Promise<string> {
  const filter = dockerignoreFilter(exclude) ?? {};
  return checksumSources(dir, await selectSources(dir, patterns, filter), { ...filter, statCache, includeOwners: false });
}

describe('content checksums of COPY sources', () => {
  it('ignores mtimes: touching a file keeps the checksum', async () => {
    const before = await sum(['.']);
    await utimes(join(dir, 'src/a.js'), new Date(1e12), new Date(1e12));
    expect(await sum(['.'])).toBe(before);
  });

  it('changes with one byte of content, a mode bit, a new file or a symlink target', async () => {
    const before = await sum(['.']);
    await writeFile(join(dir, 'src/a.js'), 'A');
    const afterContent = await sum(['.']);
    expect(afterContent).not.toBe(before);
    await chmod(join(dir, 'src/a.js'), 0o755);
    const afterMode = await sum(['.']);
    expect(afterMode).not.toBe(afterContent);
    await symlink('a.js', join(dir, 'src/link'));
    const withLink = await sum(['.']);
    expect(withLink).not.toBe(afterMode);
    await rm(join(dir, 'src/link'));
    await symlink('lib', join(dir, 'src/link'));
    expect(await sum(['.'])).not.toBe(withLink);
  });

  it('counts owners only when the copy keeps them, and notices a new owner with the stat cache warm', async () => {
    const statCache = StatCache.memory();
    const owned = async () => checksumSources(dir, await selectSources(dir, ['.']), { statCache, includeOwners: true });
    const before = await owned();
    const unowned = await sum(['.'], [], statCache);
    await chown(join(dir, 'src/lib/b.js'), 1234, 5678);
    expect(await owned()).not.toBe(before);
    expect(await sum(['.'], [], statCache)).toBe(unowned);
  });

  it('covers only the selected sources', async () => {
    const before = await sum(['package.json']);
    await writeFile(join(dir, 'src/a.js'), 'changed');
    expect(await sum(['package.json'])).toBe(before);
  });

  it('leaves out what .dockerignore excludes, and honours ! exceptions', async () => {
    const before = await sum(['.'], ['*.log']);
    await writeFile(join(dir, 'debug.log'), 'changed');
    expect(await sum(['.'], ['*.log'])).toBe(before);
    const withException = await sum(['.'], ['src', '!src/lib/b.js']);
    await writeFile(join(dir, 'src/lib/b.js'), 'changed');
    expect(await sum(['.'], ['src', '!src/lib/b.js'])).not.toBe(withException);
  });

  it('keeps each source\'s walk for a copy: the entries, paths, modes and stat keys a walk of its own gives', async () => {
    await symlink('a.js', join(dir, 'src/link'));
    await chmod(join(dir, 'src/lib/b.js'), 0o751);
    const filter = dockerignoreFilter(['*.log']) ?? {};
    const sources = await selectSources(dir, ['src', 'package.json'], filter);
    const keepWalks = new Map<string, KeptWalk>();
    await checksumSources(dir, sources, { ...filter, statCache: StatCache.memory(), includeOwners: false, keepWalks });
    const fields = (e: WalkEntry) => {
      const { size, mtimeMs, ctimeMs, nlink } = e.version;
      return [e.rel, e.abs, e.type, e.mode, e.uid, e.gid, e.size, e.statKey, size, mtimeMs, ctimeMs, nlink, e.stats.ino];
    };
    expect([...keepWalks.keys()]).toEqual(sources.map((s) => s.path));
    for (const source of sources) {
      expect([...keepWalks.get(source.path)!].map(fields)).toEqual([...walk(dir, source.path, filter)].map(fields));
    }
    expect([...keepWalks.get('src')!].map((e) => e.rel)).toEqual(['src', 'src/a.js', 'src/lib', 'src/lib/b.js', 'src/link']);
  });

  it('the stat cache survives a reload and still notices a changed file', async () => {
    const cacheDir = join(dir, '..', `${dir.split('/').pop()}-stat`);
    const first = await StatCache.load(cacheDir, dir, aMinuteLater);
    const before = await sum(['.'], [], first);
    await first.save();
    const second = await StatCache.load(cacheDir, dir, aMinuteLater);
    expect(await sum(['.'], [], second)).toBe(before);
    await writeFile(join(dir, 'src/a.js'), 'x');
    expect(await sum(['.'], [], second)).not.toBe(before);
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('hashes a file changed just before it was read again on the next build (a same-tick rewrite keeps its stat key)', async () => {
    const cacheDir = join(dir, '..', `${dir.split('/').pop()}-stat`);
    const first = await StatCache.load(cacheDir, dir);
    const before = await sum(['.'], [], first);
    await first.save();
    const entry = [...walk(dir, 'src/a.js')][0]!;
    // Within this build the digest is known; the next build does not trust it: the file could
    // still change within its timestamp's tick, with the same size, mtime and ctime.
    expect(first.cached(entry)).toMatch(/^sha256:/);
    const second = await StatCache.load(cacheDir, dir);
    expect(second.cached(entry)).toBeUndefined();
    expect(await sum(['.'], [], second)).toBe(before);
    // Read once the change is old enough, it is remembered.
    await second.save();
    const third = await StatCache.load(cacheDir, dir, aMinuteLater);
    expect(await sum(['.'], [], third)).toBe(before);
    await third.save();
    expect((await StatCache.load(cacheDir, dir)).cached(entry)).toBe(first.cached(entry));
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('skips a file name that is not valid UTF-8 when excluded, and names it otherwise', async () => {
    const bad = Buffer.concat([Buffer.from(join(dir, 'src/')), Buffer.from([0x66, 0xff, 0x2e, 0x6c, 0x6f, 0x67])]);
    writeFileSync(bad, 'x');
    expect(await sum(['.'], ['src/*.log'])).toBe(await sum(['.'], ['src/*.log', 'never']));
    await expect(sum(['.'])).rejects.toThrow(/"src\/f\\xff\.log": file names that are not valid UTF-8/);
  });

  it('the stat cache file keeps every digest it remembered, names past U+FFFF and shared prefixes too', async () => {
    for (const name of ['src/\u{1F600}a.js', 'src/\u{1F600}b.js', 'src/\u{1F601}.js', 'src/lib/é.js']) await writeFile(join(dir, name), name);
    const cacheDir = join(dir, '..', `${dir.split('/').pop()}-stat`);
    const first = await StatCache.load(cacheDir, dir, aMinuteLater);
    const before = await sum(['.'], [], first);
    await first.save();
    const second = await StatCache.load(cacheDir, dir, aMinuteLater);
    const files = [...walk(dir, '.')].filter((e) => e.type === 'file');
    expect(files.map((e) => [e.rel, second.cached(e)])).toEqual(await Promise.all(files.map(async (e) => [e.rel, await StatCache.memory().fileDigest(e)])));
    expect(await sum(['.'], [], second)).toBe(before);
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('starts empty from a stat cache file it cannot read, and replaces it', async () => {
    const cacheDir = join(dir, '..', `${dir.split('/').pop()}-stat`);
    const first = await StatCache.load(cacheDir, dir, aMinuteLater);
    const before = await sum(['.'], [], first);
    await first.save();
    const [file] = await readdir(cacheDir);
    await writeFile(join(cacheDir, file!), '{"not":"this format"}');
    const second = await StatCache.load(cacheDir, dir, aMinuteLater);
    expect([...walk(dir, '.')].filter((e) => e.type === 'file').map((e) => second.cached(e))).not.toContainEqual(expect.stringMatching(/^sha256:/));
    expect(await sum(['.'], [], second)).toBe(before);
    await second.save();
    expect(await readdir(cacheDir)).toEqual([file]);
    expect((await StatCache.load(cacheDir, dir, aMinuteLater)).cached([...walk(dir, 'package.json')][0]!)).toMatch(/^sha256:/);
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('replaces a stat cache of the previous version, which builder doctor does not count as damage', async () => {
    const cacheDir = join(dir, '..', `${dir.split('/').pop()}-stat`);
    const first = await StatCache.load(cacheDir, dir, aMinuteLater);
    const before = await sum(['.'], [], first);
    await first.save();
    const [file] = await readdir(cacheDir);
    const path = join(cacheDir, file!);
    // Version 2's header over this version's columns: no longer read, not damage either.
    const older = Buffer.concat([Buffer.from('builder stat v2\n'), readFileSync(path).subarray(16)]);
    writeFileSync(path, older);
    expect(() => checkStatCacheFile(older)).not.toThrow();
    expect(() => checkStatCacheFile(Buffer.from('builder stat v9\n'))).toThrow('not a stat cache of this version');
    const second = await StatCache.load(cacheDir, dir, aMinuteLater);
    expect(second.cached([...walk(dir, 'package.json')][0]!)).toBeUndefined();
    expect(await sum(['.'], [], second)).toBe(before);
    await second.save();
    expect(readFileSync(path).subarray(0, 16).toString()).toBe('builder stat v3\n');
    expect((await StatCache.load(cacheDir, dir, aMinuteLater)).cached([...walk(dir, 'package.json')][0]!)).toMatch(/^sha256:/);
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('keeps files outside its root only while builds read them', async () => {
    const cacheDir = join(dir, '..', `${dir.split('/').pop()}-stat`);
    const other = await mkdtemp(join(tmpdir(), 'builder-checksum-other-'));
    await writeFile(join(other, 'x.txt'), 'x');
    const otherFile = () => [...walk(other, 'x.txt')][0]!;
    const sumOther = (cache: StatCache) => checksumSources(other, [{ name: 'x.txt', path: 'x.txt' }], { statCache: cache, includeOwners: false });
    try {
      const first = await StatCache.load(cacheDir, dir, aMinuteLater);
      await sumOther(first);
      await first.save();
      // Read again by a build that also hashes something new: still remembered.
      const second = await StatCache.load(cacheDir, dir, aMinuteLater);
      expect(second.cached(otherFile())).toMatch(/^sha256:/);
      await sumOther(second);
      await sum(['.'], [], second);
      await second.save();
      // Not read by the next build that saves: forgotten.
      const third = await StatCache.load(cacheDir, dir, aMinuteLater);
      await writeFile(join(dir, 'new.txt'), 'new');
      await sum(['.'], [], third);
      await third.save();
      const fourth = await StatCache.load(cacheDir, dir, aMinuteLater);
      expect(fourth.cached(otherFile())).toBeUndefined();
      // What was loaded and saved again is remembered as it was.
      for (const name of ['new.txt', 'package.json', 'src/lib/b.js']) {
        const entry = [...walk(dir, name)][0]!;
        expect(fourth.cached(entry)).toBe(await StatCache.memory().fileDigest(entry));
      }
    } finally {
      await rm(other, { recursive: true, force: true });
      await rm(cacheDir, { recursive: true, force: true });
    }
  });
});

describe('the bytes a checksum hashes', () => {
  /** `sha256:` and the hex digest of a file's bytes, computed here rather than by the code under test. */
  const contentDigest = (path: string) => `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`;

  /**
   * The checksum as its format says (see checksumSources), from strings: a source line, then a
   * line per entry. Build caches are keyed by these bytes, so a cache made before any change to
   * how they are written still hits after it.
   */
  function expected(sources: Array<{ name: string; path: string }>, includeOwners: boolean): string {
    const hash = createHash('sha256');
    for (const source of sources) {
      hash.update(`source\0${source.name}\0${source.path}\n`);
      for (const e of walk(dir, source.path)) {
        const content = e.type === 'file' ? contentDigest(e.abs) : e.type === 'symlink' ? readlinkSync(e.abs) : '';
        hash.update(`${e.rel}\0${e.type}\0${(e.mode & 0o7777).toString(8)}\0${includeOwners ? `${e.uid}:${e.gid}` : ''}\0${content}\n`);
      }
    }
    return `sha256:${hash.digest('hex')}`;
  }

  /** Names of many lengths and scripts, past U+FFFF too, and links: lines of every size, across batch bounds. */
  async function manyNames(): Promise<void> {
    await mkdir(join(dir, 'many'));
    for (let i = 0; i < 1500; i++) {
      const name = `${'é\u{1F600}語'.repeat(i % 27)}-${i}${i % 7 === 0 ? '\nline' : ''}`;
      if (i % 5 === 0) await symlink(`../${name}-target\u{1F601}`, join(dir, 'many', name));
      else await writeFile(join(dir, 'many', name), `content ${i}`);
      // chmod follows a link, to a target that is not there: only files change mode.
      if (i % 3 === 0) await chmod(join(dir, 'many', name), 0o751).catch(() => undefined);
    }
  }

  it('are the documented lines, with the stat cache cold, warm, and loaded from its file', async () => {
    await manyNames();
    const sources = [
      { name: 'many', path: 'many' },
      { name: 'src', path: 'src' },
      { name: 'package.json', path: 'package.json' },
    ];
    const cacheDir = join(dir, '..', `${dir.split('/').pop()}-stat`);
    try {
      for (const includeOwners of [false, true]) {
        const want = expected(sources, includeOwners);
        const cache = await StatCache.load(cacheDir, dir, aMinuteLater);
        expect(await checksumSources(dir, sources, { statCache: cache, includeOwners })).toBe(want);
        expect(await checksumSources(dir, sources, { statCache: cache, includeOwners })).toBe(want);
        await cache.save();
        const loaded = await StatCache.load(cacheDir, dir, aMinuteLater);
        expect(await checksumSources(dir, sources, { statCache: loaded, includeOwners })).toBe(want);
      }
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  it('name the files a step read, for the explanation of its next miss', async () => {
    await symlink('a.js\nwith a newline', join(dir, 'src/link\nname'));
    await chmod(join(dir, 'src/lib/b.js'), 0o751);
    // The list keeps a digest's first 16 digits.
    const digest = (rel: string) => contentDigest(join(dir, rel)).slice(0, 'sha256:'.length + 16);
    for (const includeOwners of [false, true]) {
      const files = new FileList();
      await checksumSources(dir, [{ name: 'src', path: 'src' }], { statCache: StatCache.memory(), includeOwners, onEntry: files.add });
      const owner = includeOwners ? ` ${process.getuid!()}:${process.getgid!()}` : '';
      expect(files.result()).toEqual({
        files: {
          src: [`dir 755${owner}`, ''],
          'src/a.js': [`file 644${owner}`, digest('src/a.js')],
          'src/lib': [`dir 755${owner}`, ''],
          'src/lib/b.js': [`file 751${owner}`, digest('src/lib/b.js')],
          'src/link\nname': [`symlink 777${owner}`, 'a.js\nwith a newline'],
        },
      });
    }
  });
});

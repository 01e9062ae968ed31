// The copy record of a COPY step position (what its next incremental run re-uses): read back as
// written, and a record in another shape (an older format, a damaged file) is no record at all, so
// the next run copies everything as a first run does instead of failing or trusting it.

import { readdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CacheIndex } from '../../src/cache/cache-index.js';
import { CopiedFiles, type CopyRecord } from '../../src/cache/copy-record.js';

let root: string;
let cache: CacheIndex;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'builder-copy-record-'));
  cache = new CacheIndex(root);
  await cache.init();
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const ROOT = { uid: 0, gid: 0 };
const A = { size: 10, mtimeMs: 1700000000123.4567, ctimeMs: 1700000000987.6543, ino: 42 };
const B = { size: 20, mtimeMs: 1600000000000, ctimeMs: 1600000000000.001, ino: 2 ** 40 + 7 };

function files(): CopiedFiles {
  const f = new CopiedFiles();
  f.add('app/a.js', 'a.js', A, 0o644, ROOT, false);
  f.add('app/sub/é.js', 'sub/é.js', B, 0o755, { uid: 1000, gid: 1001 }, false);
  f.add('app/racy.js', 'racy.js', A, 0o644, ROOT, true);
  return f;
}

const record = (): CopyRecord => ({
  family: `sha256:${'a'.repeat(64)}`,
  snapshot: `sha256:${'b'.repeat(64)}`,
  files: files(),
  layer: { diffID: `sha256:${'c'.repeat(64)}`, entries: Float64Array.from([1024, 512, 10, 2048, 1024, 20, -1, -1, -1]) },
});

async function recordFile(ext: string): Promise<string> {
  const dir = join(root, 'cache', 'copies');
  const [file] = (await readdir(dir)).filter((n) => n.endsWith(ext));
  return join(dir, file!);
}

it('reads back the record written for a position, and only for that position', async () => {
  await cache.recordCopy('step 3', record());
  const back = await cache.lastCopy('step 3');
  expect(back?.family).toBe(record().family);
  expect(back?.snapshot).toBe(record().snapshot);
  expect([...(back?.layer?.entries ?? [])]).toEqual([...record().layer!.entries]);
  expect(back?.layer?.diffID).toBe(record().layer!.diffID);
  const f = back!.files;
  expect(f.size).toBe(3);
  // Each file matches the version it was copied from, with its mode and owner, and nothing else.
  expect(f.matches(f.indexOf('app/a.js'), 'a.js', A, 0o644, ROOT)).toBe(true);
  expect(f.matches(f.indexOf('app/sub/é.js'), 'sub/é.js', B, 0o755, { uid: 1000, gid: 1001 })).toBe(true);
  expect(f.matches(f.indexOf('app/sub/é.js'), 'sub/é.js', B, 0o755, ROOT)).toBe(false);
  expect(f.matches(f.indexOf('app/a.js'), 'b.js', A, 0o644, ROOT)).toBe(false);
  expect(f.matches(f.indexOf('app/a.js'), 'a.js', { ...A, ctimeMs: A.ctimeMs + 0.001 }, 0o644, ROOT)).toBe(false);
  // A racy source never matches, not even its own version.
  expect(f.matches(f.indexOf('app/racy.js'), 'racy.js', A, 0o644, ROOT)).toBe(false);
  expect(f.indexOf('app/none.js')).toBe(-1);
  expect(await cache.lastCopy('step 4')).toBeUndefined();
  // Without a layer too.
  await cache.recordCopy('step 5', { ...record(), layer: undefined });
  expect((await cache.lastCopy('step 5'))?.layer).toBeUndefined();
});

it('finds files asked for out of the order they were written', () => {
  const f = files();
  expect(f.indexOf('app/racy.js')).toBe(2);
  expect(f.indexOf('app/a.js')).toBe(0);
  expect(f.indexOf('app/sub/é.js')).toBe(1);
  expect(f.indexOf('app/sub/é.js', 0)).toBe(1);
});

it('takes a record in an older format or a damaged one for none, and replaces an older one', async () => {
  const dir = join(root, 'cache', 'copies');
  await cache.recordCopy('step 3', record());
  const file = await recordFile('.copy');
  const good = await readFile(file);
  // The format before: JSON, beside it under the same name; it is never read, and goes with the next record.
  const older = file.replace(/\.copy$/, '.json');
  await writeFile(older, JSON.stringify({ family: record().family, snapshot: record().snapshot, files: { paths: ['app/a.js'], origins: ['a.js\x00k\x00644\x000:0'] } }));
  await rm(file);
  expect(await cache.lastCopy('step 3')).toBeUndefined();
  await cache.recordCopy('step 3', record());
  expect(await readdir(dir)).toEqual([file.slice(dir.length + 1)]);
  for (const damaged of [good.subarray(0, good.length - 1), Buffer.concat([good, Buffer.alloc(8)]), Buffer.from('{"family": "sha256:'), Buffer.alloc(0)]) {
    await writeFile(file, damaged);
    expect(await cache.lastCopy('step 3')).toBeUndefined();
  }
  // A path list with one name too many or too few for the count.
  const text = good.toString('latin1');
  await writeFile(file, Buffer.from(text.replace('app/a.js\0', 'app/a.js/'), 'latin1'));
  expect(await cache.lastCopy('step 3')).toBeUndefined();
});

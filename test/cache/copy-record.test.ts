// The copy record of a COPY step position (what its next incremental run re-uses): read back as
// written, and a record in another shape (an older format, a damaged file) is no record at all, so
// the next run copies everything as a first run does instead of failing or trusting it.

import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CacheIndex, type CopyRecord } from '../../src/cache/cache-index.js';

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

const record: CopyRecord = {
  family: `sha256:${'a'.repeat(64)}`,
  snapshot: `sha256:${'b'.repeat(64)}`,
  files: { paths: ['app/a.js', 'app/sub/b.js'], origins: ['a.js\x00key-a\x00644\x000:0', 'sub/b.js\x00key-b\x00755\x000:0'] },
  layer: { diffID: `sha256:${'c'.repeat(64)}`, paths: ['app/a.js', 'app/sub/b.js'], entries: [1024, 512, 10, 2048, 512, 20] },
};

/** Overwrites the one record file of the state directory with `text`. */
async function replaceRecordFile(text: string): Promise<void> {
  const dir = join(root, 'cache', 'copies');
  const [file] = await readdir(dir);
  await writeFile(join(dir, file!), text);
}

it('reads back the record written for a position, and only for that position', async () => {
  await cache.recordCopy('step 3', record);
  expect(await cache.lastCopy('step 3')).toEqual(record);
  expect(await cache.lastCopy('step 4')).toBeUndefined();
});

it('takes a record in an older format or a damaged one for none', async () => {
  await cache.recordCopy('step 3', record);
  // The format before: objects keyed by path.
  await replaceRecordFile(JSON.stringify({ family: record.family, snapshot: record.snapshot, files: { 'app/a.js': 'a.js\x00key\x00644\x000:0' } }));
  expect(await cache.lastCopy('step 3')).toBeUndefined();
  await replaceRecordFile(JSON.stringify({ ...record, files: { paths: ['app/a.js'], origins: [] } }));
  expect(await cache.lastCopy('step 3')).toBeUndefined();
  await replaceRecordFile(JSON.stringify({ ...record, layer: { ...record.layer, entries: [1, 2] } }));
  expect(await cache.lastCopy('step 3')).toBeUndefined();
  await replaceRecordFile('{"family": "sha256:');
  expect(await cache.lastCopy('step 3')).toBeUndefined();
});

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { removeTemporaryFiles } from '../../src/cache/temp-files.js';
import { processToken } from '../../src/util/process.js';

/** This process's start time, as named in its temporary files (a live writer's are kept). */
const ownStart = (): string => processToken().split('.')[1]!;

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'builder-temp-files-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

it('removes what interrupted atomic writes left, and nothing else (records, a live writer\'s blob, a waiting build\'s prepared lock)', async () => {
  const hex = 'ab'.repeat(32);
  const leftovers = [
    'index.json.0123456789ab.tmp',
    'blob-sources.json.0123456789ab',
    `cache/keys/${hex}.json.0123456789ab.tmp`,
    `cache/steps/${hex}.json.0123456789ab.tmp`,
    `cache/context/${hex.slice(0, 32)}.json.0123456789ab.tmp`,
    `compressed/gzip/${hex}.0123456789ab`,
    'ingest/1234-0123456789abcdef',
  ];
  const kept = [`ingest/${process.pid}.${ownStart()}-0123456789abcdef`, 'index.json', 'blob-sources.json', `cache/keys/${hex}.json`, `cache/steps/${hex}.json`, `compressed/gzip/${hex}`, 'lock.123.456.0123456789ab/123.456'];
  for (const file of [...leftovers, ...kept]) {
    await mkdir(join(root, file, '..'), { recursive: true });
    await writeFile(join(root, file), '');
  }
  expect((await removeTemporaryFiles(root)).sort()).toEqual(leftovers.map((f) => join(root, f)).sort());
  for (const file of leftovers) expect(existsSync(join(root, file)), file).toBe(false);
  for (const file of kept) expect(existsSync(join(root, file)), file).toBe(true);
});

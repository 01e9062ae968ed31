import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import type { Digest } from '../../src/oci/types.js';
import { BlobSources } from '../../src/registry/blob-sources.js';
import { parseReference } from '../../src/registry/reference.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'blob-sources-'));
});
afterEach(() => rm(root, { recursive: true, force: true }));

const digest = (c: string) => `sha256:${c.repeat(64)}` as Digest;

test('two builds on one state directory keep both their records', async () => {
  // Each build reads the file when it first needs it, then records what it pulled.
  const first = new BlobSources(root);
  const second = new BlobSources(root);
  const target = parseReference('127.0.0.1:5000/team/app:1');
  expect(await first.mountSource(digest('a'), target)).toBeUndefined();
  expect(await second.mountSource(digest('b'), target)).toBeUndefined();
  await first.record(parseReference('127.0.0.1:5000/library/alpine:3'), [digest('a')]);
  await second.record(parseReference('127.0.0.1:5000/library/debian:12'), [digest('b')]);

  const later = new BlobSources(root);
  expect(await later.mountSource(digest('a'), target)).toBe('library/alpine');
  expect(await later.mountSource(digest('b'), target)).toBe('library/debian');
  expect(Object.keys(JSON.parse(await readFile(join(root, 'blob-sources.json'), 'utf8'))).sort()).toEqual([digest('a'), digest('b')]);
});

test('a blob pulled from another repository first names that one first', async () => {
  const sources = new BlobSources(root);
  await sources.record(parseReference('127.0.0.1:5000/one/base:1'), [digest('c')]);
  await sources.record(parseReference('127.0.0.1:5000/two/base:1'), [digest('c')]);
  expect(await new BlobSources(root).mountSource(digest('c'), parseReference('127.0.0.1:5000/three/app:1'))).toBe('two/base');
  // The target's own repository is never a mount source.
  expect(await new BlobSources(root).mountSource(digest('c'), parseReference('127.0.0.1:5000/two/base:2'))).toBe('one/base');
});

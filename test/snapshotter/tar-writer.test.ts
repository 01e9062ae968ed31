// The packer reads each file for exactly the size its header promised: a file that grew or shrank
// since it was stat'ed fails the layer rather than giving a tar whose header lies.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileChangedError, TarPacker, type TarEntry } from '../../src/snapshotter/tar-writer.js';
import { readTar, tempDir } from './helpers.js';

describe('TarPacker', () => {
  let dir: { path: string; cleanup(): Promise<void> };
  beforeEach(async () => {
    dir = await tempDir('builder-tar-writer-');
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  const file = (source: string, size: number): TarEntry => ({ name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size, source });

  /** `size` bytes of one letter, told by the size. */
  const fill = (size: number): string => String.fromCharCode(97 + (size % 26)).repeat(size);

  /** Packs `entries` with blocks of `blockSize` bytes (small blocks put file ends at block edges). */
  function pack(entries: TarEntry[], blockSize: number): Buffer {
    const blocks: Buffer[] = [];
    const packer = new TarPacker((b) => blocks.push(Buffer.from(b)), blockSize);
    for (const e of entries) packer.add(e);
    packer.finish();
    return Buffer.concat(blocks);
  }

  it.each([512, 1024, 4096, 65536])('packs files of every size around the block edge (blocks of %i bytes)', async (blockSize) => {
    const sizes = [1, 511, 512, 513, 1023, 1024, 1025, 4096, 5000];
    const entries: TarEntry[] = [];
    for (const size of sizes) {
      const path = join(dir.path, `f${size}`);
      await writeFile(path, fill(size));
      entries.push({ ...file(path, size), name: `f${size}` });
    }
    const read = await readTar(pack(entries, blockSize));
    expect(read.map((e) => [e.name, e.content])).toEqual(sizes.map((s) => [`f${s}`, fill(s)]));
  });

  it.each([512, 1024, 65536])('fails on a file that grew or shrank since its header was made (blocks of %i bytes)', async (blockSize) => {
    const path = join(dir.path, 'f');
    await writeFile(path, Buffer.alloc(1024, 1));
    expect(() => pack([file(path, 1000)], blockSize)).toThrow(FileChangedError);
    expect(() => pack([file(path, 1023)], blockSize)).toThrow(FileChangedError);
    expect(() => pack([file(path, 1025)], blockSize)).toThrow(FileChangedError);
    expect(pack([file(path, 1024)], blockSize).length).toBe(512 + 1024 + 1024);
  });
});

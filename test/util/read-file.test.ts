import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRegularFile, readRegularFileSync } from '../../src/util/read-file.js';

// The synchronous one behaves the same, its errors thrown where the other's reject.
const readers = [
  ['readRegularFile', readRegularFile],
  ['readRegularFileSync', async (path: string, maxBytes: number) => readRegularFileSync(path, maxBytes)],
] as const;

describe.each(readers)('%s', (_, readRegularFile) => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'builder-read-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a file up to the limit, and refuses one a byte larger', async () => {
    const file = join(dir, 'f');
    await writeFile(file, 'x'.repeat(100));
    expect((await readRegularFile(file, 100)).toString()).toBe('x'.repeat(100));
    await expect(readRegularFile(file, 99)).rejects.toThrow('the file is larger than 99 bytes');
    await writeFile(file, '');
    expect(await readRegularFile(file, 100)).toEqual(Buffer.alloc(0));
  });

  it('reads all of a file whose size fstat does not know (procfs says 0)', async () => {
    const expected = readFileSync('/proc/self/cmdline');
    expect(expected.length).toBeGreaterThan(1);
    expect(await readRegularFile('/proc/self/cmdline', 1024 * 1024)).toEqual(expected);
    await expect(readRegularFile('/proc/self/cmdline', 1)).rejects.toThrow('the file is larger than 1 byte');
  });

  it('refuses a FIFO at once (no writer is waited for), a directory and a device', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    await expect(readRegularFile(fifo, 100)).rejects.toThrow('not a regular file: it is a FIFO (named pipe)');
    await expect(readRegularFile(dir, 100)).rejects.toThrow('not a regular file: it is a directory');
    await expect(readRegularFile('/dev/zero', 100)).rejects.toThrow('not a regular file: it is a character device');
  });
});

// Reading a small file a user named (a Dockerfile, a secret) without trusting what it is: a FIFO
// must not block the process, a device must not stream without end, a file must not be larger
// than the caller's limit.

import { constants, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';

const KINDS: Array<[(s: Stats) => boolean, string]> = [
  [(s) => s.isDirectory(), 'a directory'],
  [(s) => s.isFIFO(), 'a FIFO (named pipe)'],
  [(s) => s.isSocket(), 'a socket'],
  [(s) => s.isCharacterDevice(), 'a character device'],
  [(s) => s.isBlockDevice(), 'a block device'],
];

/**
 * The bytes of a regular file of at most `maxBytes`. Opened non-blocking and checked with fstat
 * before any read: a FIFO would otherwise block the read (and the process) forever. O_NOCTTY keeps
 * a terminal from becoming ours. Errors say what is wrong, not what the file holds.
 */
export async function readRegularFile(path: string, maxBytes: number): Promise<Buffer> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Error(`not a regular file: it is ${KINDS.find(([is]) => is(st))?.[1] ?? 'a special file'}`);
    const tooBig = () => new Error(`the file is larger than ${formatLimit(maxBytes)}`);
    if (st.size > maxBytes) throw tooBig();
    // Read one byte past the limit, in case the file grew since fstat.
    let buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let length = 0;
    for (;;) {
      if (length === buf.length) {
        if (length > maxBytes) throw tooBig();
        // Longer than fstat said: it grew, or it is a procfs file, whose size reads as 0.
        const larger = Buffer.alloc(Math.min(buf.length * 2, maxBytes + 1));
        buf.copy(larger);
        buf = larger;
      }
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buf.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** 16 MiB, 500 KiB, 100 bytes. */
function formatLimit(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / 1024 / 1024} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} byte${bytes === 1 ? '' : 's'}`;
}

/** Up to `length` first bytes of a file (its magic number, a tar header): fewer when it is shorter. */
export async function readFileHead(path: string, length: number): Promise<Buffer> {
  const file = await open(path);
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(length), 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

// Reading a small file a user named (a Dockerfile, a secret) without trusting what it is: a FIFO
// must not block the process, a device must not stream without end, a file must not be larger
// than the caller's limit.

import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
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
  const handle = await open(path, OPEN_FLAGS);
  try {
    const st = await handle.stat();
    let buf = bufferFor(st, maxBytes);
    let length = 0;
    for (;;) {
      if (length === buf.length) buf = larger(buf, maxBytes);
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buf.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/**
 * readRegularFile, synchronously: for the few small files every build reads before anything
 * else can run (the Dockerfile, `.dockerignore`), where thread-pool trips cost more than the reads.
 */
export function readRegularFileSync(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    let buf = bufferFor(fstatSync(fd), maxBytes);
    let length = 0;
    for (;;) {
      if (length === buf.length) buf = larger(buf, maxBytes);
      const bytesRead = readSync(fd, buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buf.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** A buffer one byte larger than the file (to notice it grew since fstat); throws unless it is a regular file within the limit. */
function bufferFor(st: Stats, maxBytes: number): Buffer {
  if (!st.isFile()) throw new Error(`not a regular file: it is ${KINDS.find(([is]) => is(st))?.[1] ?? 'a special file'}`);
  if (st.size > maxBytes) throw tooBig(maxBytes);
  return Buffer.alloc(Math.min(st.size, maxBytes) + 1);
}

/** A full buffer, doubled: the file is longer than fstat said (it grew, or it is a procfs file, whose size reads as 0). */
function larger(buf: Buffer, maxBytes: number): Buffer {
  if (buf.length > maxBytes) throw tooBig(maxBytes);
  const next = Buffer.alloc(Math.min(buf.length * 2, maxBytes + 1));
  buf.copy(next);
  return next;
}

function tooBig(maxBytes: number): Error {
  return new Error(`the file is larger than ${formatLimit(maxBytes)}`);
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

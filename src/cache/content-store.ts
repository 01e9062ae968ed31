// Blobs by sha256, laid out as an OCI image layout's `blobs/` so the store doubles as one.
// Writes go to a temporary file and are renamed into place only once size and digest check out:
// a reader never sees a partial blob, and an interrupted write leaves only a temp file to sweep,
// named after its writer (see processToken) so that only a dead writer's files are swept.

import { createHash, randomBytes } from 'node:crypto';
import { close, createReadStream, existsSync, mkdirSync, open, readdirSync, readFileSync, renameSync, writeFileSync, writev } from 'node:fs';
import { readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { isSha256Digest, sha256 } from '../oci/digest.js';
import type { Digest } from '../oci/types.js';
import { isOwnerAlive, processToken } from '../util/process.js';

export class DigestMismatchError extends Error {
  constructor(
    readonly expected: Digest,
    readonly actual: Digest,
    readonly source?: string,
  ) {
    super(`digest mismatch${source ? ` for ${source}` : ''}: expected ${expected}, got ${actual}`);
    this.name = 'DigestMismatchError';
  }
}

export class SizeMismatchError extends Error {
  constructor(
    readonly expected: number,
    readonly actual: number,
    readonly source?: string,
  ) {
    super(`size mismatch${source ? ` for ${source}` : ''}: expected ${expected} bytes, got ${actual}`);
    this.name = 'SizeMismatchError';
  }
}

/** Hashes and counts the bytes that flow through it. */
export class DigestCounter extends Transform {
  private readonly hash = createHash('sha256');
  size = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    done(null, chunk);
  }

  digest(): Digest {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

export interface Expected {
  digest?: Digest;
  size?: number;
  /** Named in errors (e.g. the registry URL of the blob). */
  source?: string;
}

export class ContentStore {
  readonly blobsDir: string;
  private readonly ingestDir: string;

  constructor(readonly root: string) {
    this.blobsDir = join(root, 'blobs', 'sha256');
    this.ingestDir = join(root, 'ingest');
  }

  async init(): Promise<void> {
    // Synchronous, as the state directory's opening (see state.ts): part of every command.
    mkdirSync(this.blobsDir, { recursive: true });
    mkdirSync(this.ingestDir, { recursive: true });
    // Leftovers of interrupted writes are never referenced: drop them.
    for (const path of await this.leftoverWrites()) await rm(path, { recursive: true, force: true });
  }

  /** Temporary files (absolute paths) of interrupted writes whose writer is gone; a live one may still be writing its own. */
  async leftoverWrites(): Promise<string[]> {
    let names: string[] = [];
    try {
      names = readdirSync(this.ingestDir);
    } catch {
      // not there: nothing left over
    }
    return names.filter((name) => !isOwnerAlive(/^(\d+\.\d+)-/.exec(name)?.[1] ?? '')).map((name) => join(this.ingestDir, name));
  }

  path(digest: Digest): string {
    if (!isSha256Digest(digest)) throw new Error(`invalid digest ${digest}`);
    return join(this.blobsDir, digest.slice('sha256:'.length));
  }

  async has(digest: Digest): Promise<boolean> {
    // Synchronous: one stat, asked for every layer and config of every build.
    try {
      return existsSync(this.path(digest));
    } catch {
      return false; // not a digest
    }
  }

  async size(digest: Digest): Promise<number> {
    return (await stat(this.path(digest))).size;
  }

  read(digest: Digest): Readable {
    return createReadStream(this.path(digest));
  }

  async readBytes(digest: Digest): Promise<Buffer> {
    return readFile(this.path(digest));
  }

  /** A JSON document (manifest, index, config): small, so read synchronously, as every build reads a few. */
  async readJson<T>(digest: Digest): Promise<T> {
    return JSON.parse(readFileSync(this.path(digest), 'utf8')) as T;
  }

  /** Stores a small blob held in memory (configs, manifests): synchronously, as readJson. */
  async putBytes(data: Uint8Array | string): Promise<{ digest: Digest; size: number }> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const digest = sha256(buf);
    if (!(await this.has(digest))) {
      const tmp = this.tempPath();
      writeFileSync(tmp, buf);
      renameSync(tmp, this.path(digest));
    }
    return { digest, size: buf.length };
  }

  /**
   * Streams `source` into the store. With `expected.digest` the blob is accepted only if it
   * matches (else DigestMismatchError and nothing is stored); without it the computed digest wins.
   */
  async ingest(source: Readable, expected: Expected = {}): Promise<{ digest: Digest; size: number }> {
    const tmp = this.tempPath();
    try {
      const { digest, size } = await hashToFile(source, tmp);
      if (expected.size !== undefined && size !== expected.size) {
        throw new SizeMismatchError(expected.size, size, expected.source);
      }
      if (expected.digest && digest !== expected.digest) {
        throw new DigestMismatchError(expected.digest, digest, expected.source);
      }
      await rename(tmp, this.path(digest));
      return { digest, size };
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * A writable file for producers that compute the digest themselves (layer diffing writes the
   * compressed stream once and hashes it on the way); `commit` moves it into place.
   */
  async createWriter(): Promise<{ path: string; commit(digest: Digest): Promise<void>; abort(): Promise<void> }> {
    const tmp = this.tempPath();
    return {
      path: tmp,
      commit: async (digest) => rename(tmp, this.path(digest)),
      abort: async () => rm(tmp, { force: true }),
    };
  }

  private tempPath(): string {
    return join(this.ingestDir, `${processToken()}-${randomBytes(8).toString('hex')}`);
  }
}

/** Bytes handed to the file system but not yet written, per ingest: the source pauses beyond it. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/**
 * Writes `source` to a new file at `path`, hashing it on the way. Leaner than a pipeline through
 * a hashing Transform into a WriteStream (about half the CPU per byte): the hash runs in the
 * 'data' handler, and the chunks that arrive meanwhile go to the file in one writev per round
 * trip to libuv's thread pool, so the copy into the page cache runs beside the hashing.
 */
function hashToFile(source: Readable, path: string): Promise<{ digest: Digest; size: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let size = 0;
    let fd: number | undefined;
    let opened = false;
    let queue: Buffer[] = [];
    let queued = 0;
    let writing = 0;
    let ended = false;
    let error: Error | undefined;
    let settled = false;

    // Settles only once the file is open and no write is in flight, so the caller's cleanup
    // (removing the file) never races a late open or write.
    const flush = (): void => {
      if (settled || !opened || writing) return;
      if (!error && queue.length > 0) {
        const chunks = queue;
        writing = queued;
        queue = [];
        queued = 0;
        writev(fd as number, chunks, (err, written) => {
          if (err || written !== writing) error ??= err ?? new Error(`short write to ${path}`);
          else if (source.isPaused()) source.resume();
          writing = 0;
          flush();
        });
        return;
      }
      if (!error && !ended) return;
      settled = true;
      const settle = (err?: Error | null): void => {
        const e = error ?? err;
        if (e) reject(e);
        else resolve({ digest: `sha256:${hash.digest('hex')}`, size });
      };
      if (fd === undefined) settle();
      else close(fd, settle);
    };
    const fail = (err: Error): void => {
      error ??= err;
      source.destroy();
      flush();
    };

    open(path, 'wx', (err, f) => {
      opened = true;
      if (err) error ??= err;
      else fd = f;
      flush();
    });
    source.on('data', (chunk: Buffer) => {
      if (error) return;
      hash.update(chunk);
      size += chunk.length;
      queue.push(chunk);
      queued += chunk.length;
      if (queued + writing > MAX_QUEUED_BYTES) source.pause();
      flush();
    });
    source.once('end', () => {
      ended = true;
      flush();
    });
    source.once('error', fail);
    source.once('close', () => {
      if (!ended) fail(new Error('blob stream closed before its end'));
    });
  });
}

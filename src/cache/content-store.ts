// Blobs by sha256, laid out as an OCI image layout's `blobs/` so the store doubles as one.
// Writes go to a temporary file and are renamed into place only once size and digest check out:
// a reader never sees a partial blob, and an interrupted write leaves only a temp file to sweep.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest } from '../oci/types.js';

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
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.ingestDir, { recursive: true });
    // Leftovers of interrupted writes are never referenced: drop them.
    await rm(this.ingestDir, { recursive: true, force: true });
    await mkdir(this.ingestDir, { recursive: true });
  }

  path(digest: Digest): string {
    const [algo, hex] = digest.split(':');
    if (algo !== 'sha256' || !hex || !/^[a-f0-9]{64}$/.test(hex)) throw new Error(`invalid digest ${digest}`);
    return join(this.blobsDir, hex);
  }

  async has(digest: Digest): Promise<boolean> {
    try {
      await stat(this.path(digest));
      return true;
    } catch {
      return false;
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

  async readJson<T>(digest: Digest): Promise<T> {
    return JSON.parse((await this.readBytes(digest)).toString('utf8')) as T;
  }

  /** Stores a small blob held in memory (configs, manifests). */
  async putBytes(data: Uint8Array | string): Promise<{ digest: Digest; size: number }> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const digest: Digest = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
    if (!(await this.has(digest))) {
      const tmp = this.tempPath();
      await writeFile(tmp, buf);
      await rename(tmp, this.path(digest));
    }
    return { digest, size: buf.length };
  }

  /**
   * Streams `source` into the store. With `expected.digest` the blob is accepted only if it
   * matches (else DigestMismatchError and nothing is stored); without it the computed digest wins.
   */
  async ingest(source: Readable, expected: Expected = {}): Promise<{ digest: Digest; size: number }> {
    const tmp = this.tempPath();
    const counter = new DigestCounter();
    try {
      await pipeline(source, counter, createWriteStream(tmp));
      const digest = counter.digest();
      if (expected.size !== undefined && counter.size !== expected.size) {
        throw new SizeMismatchError(expected.size, counter.size, expected.source);
      }
      if (expected.digest && digest !== expected.digest) {
        throw new DigestMismatchError(expected.digest, digest, expected.source);
      }
      await rename(tmp, this.path(digest));
      return { digest, size: counter.size };
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
    return join(this.ingestDir, `${process.pid}-${randomBytes(8).toString('hex')}`);
  }
}

// The cache index: cache key → the layer chain a step produced. One small JSON file per key,
// written atomically, so concurrent builds sharing a state directory never see a torn record.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../oci/types.js';

export interface LayerRecord {
  /** sha256 of the uncompressed tar. */
  diffID: Digest;
  /** sha256 of the blob as stored (compressed). */
  digest: Digest;
  size: number;
  mediaType: string;
}

export interface CacheRecord {
  layers: LayerRecord[];
  createdAt: string;
}

export class CacheIndex {
  private readonly dir: string;

  constructor(root: string) {
    this.dir = join(root, 'cache', 'keys');
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  async get(key: Digest): Promise<CacheRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.file(key), 'utf8')) as CacheRecord;
    } catch {
      return undefined;
    }
  }

  async set(key: Digest, layers: LayerRecord[]): Promise<void> {
    const record: CacheRecord = { layers, createdAt: new Date().toISOString() };
    const tmp = `${this.file(key)}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(record));
    await rename(tmp, this.file(key));
  }

  private file(key: Digest): string {
    return join(this.dir, `${key.slice('sha256:'.length)}.json`);
  }
}

// The cache index: cache key → the layer chain a step produced. One small JSON file per key,
// written atomically, so concurrent builds sharing a state directory never see a torn record.
// A record's mtime is when it was last used (written, or found by a lookup), for pruning: a
// lookup touches it, one utimes call, rather than rewriting it.

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, utimes, writeFile } from 'node:fs/promises';
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

/** A record as stored: its key, its file, and when it was last used. */
export interface StoredCacheRecord extends CacheRecord {
  key: Digest;
  file: string;
  lastUsed: Date;
}

export class CacheIndex {
  private readonly dir: string;

  constructor(root: string) {
    this.dir = join(root, 'cache', 'keys');
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** The record of `key`, marked as used now. */
  async get(key: Digest): Promise<CacheRecord | undefined> {
    try {
      const record = JSON.parse(await readFile(this.file(key), 'utf8')) as CacheRecord;
      const now = new Date();
      await utimes(this.file(key), now, now).catch(() => undefined);
      return record;
    } catch {
      return undefined;
    }
  }

  /** Every readable record, with its file and when it was last used; marks none as used. */
  async list(): Promise<StoredCacheRecord[]> {
    const records: StoredCacheRecord[] = [];
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{64}\.json$/.test(name)) continue; // temporary files of writes under way or interrupted
      const file = join(this.dir, name);
      try {
        const [text, st] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
        const record = JSON.parse(text) as CacheRecord;
        if (Array.isArray(record.layers)) records.push({ ...record, key: `sha256:${name.slice(0, 64)}`, file, lastUsed: st.mtime });
      } catch {
        // removed meanwhile, or unreadable (doctor reports it)
      }
    }
    return records;
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

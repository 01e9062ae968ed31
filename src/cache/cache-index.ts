// The cache index: cache key → the layer chain a step produced. One small JSON file per key,
// written atomically, so concurrent builds sharing a state directory never see a torn record.
// A record's mtime is when it was last used (written, or found by a lookup), for pruning: a
// lookup touches it, one utimes call, rather than rewriting it. Beside it, per step position,
// what the step's last cache key was made of (its ingredients): what a later miss is explained
// against. While a step runs, its key is claimed (`cache/running/<key>.lock`): a build that
// misses the same key meanwhile waits for that result instead of running the step again.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, utimesSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../oci/types.js';
import { writeFileAtomic } from '../util/write-file.js';
import { decodeCopyRecord, encodeCopyRecord, type CopyRecord } from './copy-record.js';
import { acquireLock } from './lock.js';

export type { CopyRecord } from './copy-record.js';

export interface LayerRecord {
  /** sha256 of the uncompressed tar. */
  diffID: Digest;
  /** sha256 of the blob as stored (compressed). */
  digest: Digest;
  size: number;
  mediaType: string;
  /**
   * When the layer was made (BuildKit's `buildkit/createdat`). The image's history takes a new
   * layer's time from here, so a rebuild from the cache gives the same config, and image ID.
   */
  createdAt?: string;
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

/**
 * What one cache key was made of, small and bounded: enough to name the first input that differs
 * from another key of the same step. Values that may be secret are kept as digests only.
 */
export interface KeyIngredients {
  key: Digest;
  /** The step's name when recorded. */
  name: string;
  /** The op's fields that count, as text: field → value (command, cwd, user, mounts, actions …). */
  op: Record<string, string>;
  /** Environment of a RUN (build args in scope and ENV): name → digest of the value. */
  env?: Record<string, string>;
  /** The base image's manifest digest (FROM). */
  image?: string;
  /** Inputs counted by cache key: the parent filesystem, stages copied or mounted from. */
  inputs?: Array<{ role: 'parent' | 'source'; name: string; key: Digest }>;
  /**
   * Files read (COPY/ADD sources, bind mounts): path → [type and mode (and owner), content digest
   * or link target]. Past a bound, one entry per top-level directory (`src/`) whose digest sums
   * its files, and `summarised` is set.
   */
  files?: Record<string, [string, string]>;
  summarised?: boolean;
}

export class CacheIndex {
  private readonly dir: string;
  private readonly stepsDir: string;
  private readonly claimsDir: string;
  private readonly copiesDir: string;

  constructor(root: string) {
    this.dir = join(root, 'cache', 'keys');
    this.stepsDir = join(root, 'cache', 'steps');
    this.claimsDir = join(root, 'cache', 'running');
    this.copiesDir = join(root, 'cache', 'copies');
  }

  async init(): Promise<void> {
    // Synchronous, as the state directory's opening (see state.ts): part of every command.
    for (const dir of [this.dir, this.stepsDir, this.claimsDir, this.copiesDir]) mkdirSync(dir, { recursive: true });
  }

  /**
   * Claims `key` for the step about to make it, across the processes sharing this directory:
   * waits while another holds the claim (`onWait` is told its PID after about a second). The
   * caller looks the key up again once it has the claim, and lets go when its record is written.
   */
  claim(key: Digest, opts: { signal?: AbortSignal; onWait?: (pid: number) => void } = {}): Promise<() => Promise<void>> {
    const lock = join(this.claimsDir, `${key.slice('sha256:'.length)}.lock`);
    return acquireLock(lock, `cache key ${key}`, { waitMs: Number.POSITIVE_INFINITY, pollMs: 50, ...opts });
  }

  /** The latest COPY result recorded for step `position`, if any (see CopyRecord). */
  async lastCopy(position: string): Promise<CopyRecord | undefined> {
    try {
      // A record of an older version (a `.json` file) is not read: that step copies everything once.
      return decodeCopyRecord(await readFile(this.copyFile(position)));
    } catch {
      return undefined;
    }
  }

  /** Records `copy` as step `position`'s latest COPY result (one per position: the last one wins). */
  async recordCopy(position: string, copy: CopyRecord): Promise<void> {
    await writeFileAtomic(this.copyFile(position), encodeCopyRecord(copy));
    // The JSON record of earlier versions, for the same position.
    await rm(this.positionFile(this.copiesDir, position), { force: true });
  }

  /** The ingredients last recorded for step `position` (an opaque id), if any. */
  async lastIngredients(position: string): Promise<KeyIngredients | undefined> {
    try {
      // Synchronous, as get(): a small file each step of every build reads.
      return JSON.parse(readFileSync(this.stepFile(position), 'utf8')) as KeyIngredients;
    } catch {
      return undefined;
    }
  }

  /** Records `ingredients` as step `position`'s latest; a no-op when its key is recorded already. */
  async recordIngredients(position: string, ingredients: KeyIngredients, previous?: KeyIngredients): Promise<void> {
    const last = previous ?? (await this.lastIngredients(position));
    if (last?.key === ingredients.key) return;
    await writeFileAtomic(this.stepFile(position), JSON.stringify(ingredients));
  }

  /** The record of `key`, marked as used now unless `peek` (a look that uses nothing: --explain-cache). */
  async get(key: Digest, { peek = false } = {}): Promise<CacheRecord | undefined> {
    // Synchronous: a small file and a utimes per step of every build, each of microseconds, where
    // two trips through the thread pool cost more (a cached build is mostly these).
    try {
      const record = withLayerTimes(JSON.parse(readFileSync(this.file(key), 'utf8')) as CacheRecord);
      const now = new Date();
      if (!peek) {
        try {
          utimesSync(this.file(key), now, now);
        } catch {
          // removed meanwhile: the record read still holds
        }
      }
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
    await writeFileAtomic(this.file(key), JSON.stringify(record));
  }

  private file(key: Digest): string {
    return join(this.dir, `${key.slice('sha256:'.length)}.json`);
  }

  private stepFile(position: string): string {
    return this.positionFile(this.stepsDir, position);
  }

  private copyFile(position: string): string {
    return this.positionFile(this.copiesDir, position, 'copy');
  }

  private positionFile(dir: string, position: string, extension = 'json'): string {
    return join(dir, `${createHash('sha256').update(position).digest('hex')}.${extension}`);
  }
}

/** A record of an older version has no layer times: its own layer was made with the record. */
function withLayerTimes(record: CacheRecord): CacheRecord {
  const top = record.layers?.at(-1);
  if (top && top.createdAt === undefined && record.createdAt) record.layers = [...record.layers.slice(0, -1), { ...top, createdAt: record.createdAt }];
  return record;
}

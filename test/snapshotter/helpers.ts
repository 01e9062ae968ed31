// Test helpers: build layer tars in memory with tar-stream, read stored layers back.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { ContentStore } from '../../src/cache/content-store.js';
import type { Digest } from '../../src/oci/types.js';

export interface TestEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'fifo';
  content?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
  mtime?: Date;
  pax?: Record<string, string>;
}

const FIXED_TIME = new Date('2020-01-02T03:04:05Z');

/** A tar archive of `entries`, in order. */
export async function makeTar(entries: TestEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(Buffer.from(c as Uint8Array));
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? FIXED_TIME,
      linkname: e.linkname,
      pax: e.pax,
    };
    await new Promise<void>((resolve, reject) => {
      if (type === 'file') pack.entry(header, e.content ?? '', (err) => (err ? reject(err) : resolve()));
      else pack.entry(header, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export async function makeLayer(entries: TestEntry[]): Promise<Buffer> {
  return gzipSync(await makeTar(entries));
}

export function stream(buf: Buffer): Readable {
  return Readable.from([buf]);
}

export interface ReadEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string | null;
  uname: string;
  gname: string;
  content: string;
  pax: Record<string, string> | undefined;
}

/** Parses a stored gzip layer into its entries (content as text). */
export async function readLayer(store: ContentStore, digest: Digest): Promise<ReadEntry[]> {
  const blob = await store.readBytes(digest);
  return readTar(blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob);
}

export async function readTar(raw: Buffer): Promise<ReadEntry[]> {
  const extract = tar.extract();
  const out: ReadEntry[] = [];
  const feeding = (async () => {
    extract.end(raw);
  })();
  for await (const entry of extract) {
    const parts: Buffer[] = [];
    for await (const c of entry) parts.push(Buffer.from(c as Uint8Array));
    const h = entry.header;
    out.push({
      name: h.name,
      type: h.type,
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      size: h.size,
      mtime: h.mtime.getTime() / 1000,
      linkname: h.linkname ?? null,
      uname: h.uname,
      gname: h.gname,
      content: Buffer.concat(parts).toString('utf8'),
      pax: (h.pax as Record<string, string> | null) ?? undefined,
    });
  }
  await feeding;
  return out;
}

export async function tempDir(prefix: string): Promise<{ path: string; cleanup(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

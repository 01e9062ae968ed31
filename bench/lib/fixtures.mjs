// Deterministic inputs for the scenarios: a source tree shaped like a real project's and the
// filler of a distribution-sized base image. Everything is drawn from an AES-CTR keystream with a
// fixed key, so every machine (and every run) gets byte-identical trees without shipping them.

import { createCipheriv } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A seeded stream of pseudo-random bytes and numbers (not for secrets: the key is public). */
export function keystream(seed) {
  const key = Buffer.alloc(16);
  key.write(String(seed));
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(64 * 1024);
  let pool = Buffer.alloc(0);
  let at = 0;
  const bytes = (n) => {
    if (at + n > pool.length) {
      const fresh = [pool.subarray(at)];
      let have = pool.length - at;
      while (have < n) {
        const chunk = cipher.update(zeros);
        fresh.push(chunk);
        have += chunk.length;
      }
      pool = Buffer.concat(fresh);
      at = 0;
    }
    const out = pool.subarray(at, at + n);
    at += n;
    return out;
  };
  /** A float in [0, 1). */
  const next = () => bytes(4).readUInt32LE(0) / 2 ** 32;
  return { bytes, next, int: (n) => Math.floor(next() * n) };
}

/**
 * Writes a tree under `dir`: `files` files in about files/25 directories up to four deep, sizes
 * spread log-normally around `meanKB`, and `binaryShare` of them incompressible (the rest text
 * lines drawn from a small vocabulary, so they compress about as well as source code). Returns the
 * relative paths of the text files, which scenarios edit.
 */
export function writeTree(dir, { files, meanKB, binaryShare, seed }) {
  const rnd = keystream(seed);
  const words = Array.from({ length: 4000 }, () => rnd.bytes(3 + rnd.int(8)).toString('base64url').replace(/[-_\d]/g, 'x').toLowerCase());
  // 400 distinct lines: gzip finds most repeats in its 32 KiB window, about 6:1 as for source code.
  const lines = Array.from({ length: 400 }, () => {
    const n = 2 + rnd.int(9);
    return `${'  '.repeat(rnd.int(4))}${Array.from({ length: n }, () => words[rnd.int(words.length)]).join(' ')};\n`;
  });
  const dirs = [''];
  for (let i = 1; i < Math.max(1, Math.round(files / 25)); i++) {
    const parent = dirs[rnd.int(dirs.length)];
    dirs.push(parent.split('/').length >= 4 ? `d${i}` : parent ? `${parent}/d${i}` : `d${i}`);
  }
  for (const d of dirs) mkdirSync(join(dir, d), { recursive: true });
  const text = [];
  for (let i = 0; i < files; i++) {
    // exp(N(0, 1)) has mean e^0.5: scaled so the mean size is meanKB.
    const gauss = Math.sqrt(-2 * Math.log(1 - rnd.next())) * Math.cos(2 * Math.PI * rnd.next());
    const size = Math.max(16, Math.round((meanKB * 1024 * Math.exp(gauss)) / Math.exp(0.5)));
    const path = join(dirs[rnd.int(dirs.length)], `f${i}${rnd.next() < binaryShare ? '.bin' : '.js'}`);
    if (path.endsWith('.bin')) {
      writeFileSync(join(dir, path), rnd.bytes(size));
      continue;
    }
    const parts = [];
    let length = 0;
    while (length < size) {
      const line = lines[rnd.int(lines.length)];
      parts.push(line);
      length += line.length;
    }
    writeFileSync(join(dir, path), parts.join(''));
    text.push(path);
  }
  return text;
}

/** The source tree of the context scenarios: about 7.5k files and 80 MB, as the issue measured. */
export const SOURCE_TREE = { files: 7500, meanKB: 10, binaryShare: 0.02, seed: 'source-tree' };

/** What a debian:bookworm base weighs: about 120 MB in 6k files, about 50 MB gzipped. */
export const DISTRO_FILLER = { files: 6000, meanKB: 17, binaryShare: 0.3, seed: 'distro' };

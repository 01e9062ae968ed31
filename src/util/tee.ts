// One stream read by two consumers in a single pass: a downloaded layer goes to the content store
// and into a snapshot at once.

import { Readable } from 'node:stream';

/** Bytes each branch buffers before the source waits for it. */
const BRANCH_BUFFER = 1024 * 1024;

/**
 * Splits `source` into two streams that each get every byte, at the pace of the slower one. A
 * branch its reader destroys is dropped and the other goes on alone (the source is destroyed once
 * both are gone); an error of the source (or its closing before the end) errors both.
 *
 * The branches are plain Readables the source pushes into (a PassThrough would run every chunk
 * through a Writable and a Transform on top of that).
 */
export function tee(source: Readable): [Readable, Readable] {
  /** Branches that refused a chunk (over their buffer) and have not asked for more since. */
  const full = new Set<Readable>();
  const branch = (): Readable =>
    new Readable({
      highWaterMark: BRANCH_BUFFER,
      read() {
        full.delete(this);
        resumeIfDrained();
      },
    });
  const branches = [branch(), branch()] as const;
  const live = (): Readable[] => branches.filter((b) => !b.destroyed);
  function resumeIfDrained(): void {
    const open = live();
    if (open.length === 0) source.destroy();
    else if (source.isPaused() && open.every((b) => !full.has(b))) source.resume();
  }
  for (const b of branches) {
    b.once('close', () => {
      full.delete(b);
      resumeIfDrained();
    });
  }
  source.on('data', (chunk: Buffer) => {
    for (const b of live()) if (!b.push(chunk)) full.add(b);
    if (full.size > 0) source.pause();
  });
  let ended = false;
  source.once('end', () => {
    ended = true;
    for (const b of live()) b.push(null);
  });
  source.once('error', (err) => {
    for (const b of live()) b.destroy(err);
  });
  source.once('close', () => {
    if (!ended) for (const b of live()) b.destroy(new Error('stream closed before its end'));
  });
  return [branches[0], branches[1]];
}

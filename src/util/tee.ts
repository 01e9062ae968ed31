// One stream read by two consumers in a single pass: a downloaded layer goes to the content store
// and into a snapshot at once.

import { PassThrough, type Readable } from 'node:stream';

/** Bytes each branch buffers before the source waits for it. */
const BRANCH_BUFFER = 1024 * 1024;

/**
 * Splits `source` into two streams that each get every byte, at the pace of the slower one. A
 * branch its reader destroys is dropped and the other goes on alone (the source is destroyed once
 * both are gone); an error of the source (or its
 * closing before the end) errors both.
 */
export function tee(source: Readable): [Readable, Readable] {
  const branches = [new PassThrough({ highWaterMark: BRANCH_BUFFER }), new PassThrough({ highWaterMark: BRANCH_BUFFER })] as const;
  const live = (): PassThrough[] => branches.filter((b) => !b.destroyed);
  const resumeIfDrained = (): void => {
    const open = live();
    if (open.length === 0) source.destroy();
    else if (source.isPaused() && open.every((b) => !b.writableNeedDrain)) source.resume();
  };
  for (const b of branches) b.on('drain', resumeIfDrained).once('close', resumeIfDrained);
  source.on('data', (chunk: Buffer) => {
    let full = false;
    for (const b of live()) if (!b.write(chunk)) full = true;
    if (full) source.pause();
  });
  let ended = false;
  source.once('end', () => {
    ended = true;
    for (const b of live()) b.end();
  });
  source.once('error', (err) => {
    for (const b of live()) b.destroy(err);
  });
  source.once('close', () => {
    if (!ended) for (const b of live()) b.destroy(new Error('stream closed before its end'));
  });
  return [branches[0], branches[1]];
}

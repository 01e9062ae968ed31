import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { tee } from '../../src/util/tee.js';

/** 6 MiB in 64 KiB chunks: several times what a branch buffers. */
function source(): { stream: Readable; digest: string } {
  const chunks = Array.from({ length: 96 }, () => randomBytes(64 * 1024));
  const digest = createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
  return { stream: Readable.from(chunks, { objectMode: false }), digest };
}

async function digestOf(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

describe('tee', () => {
  it('gives both branches every byte when one starts reading only after the other has filled its buffer', async () => {
    const { stream, digest } = source();
    const [fast, late] = tee(stream);
    const first = digestOf(fast);
    await sleep(50);
    expect(await Promise.all([first, digestOf(late)])).toEqual([digest, digest]);
  });

  it('follows a branch read in bursts (paused and resumed by its reader)', async () => {
    const { stream, digest } = source();
    const [a, b] = tee(stream);
    const hash = createHash('sha256');
    const bursty = new Promise<string>((resolve, reject) => {
      a.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        a.pause();
        setTimeout(() => a.resume(), 1);
      });
      a.once('end', () => resolve(hash.digest('hex'))).once('error', reject);
    });
    expect(await Promise.all([bursty, digestOf(b)])).toEqual([digest, digest]);
  });

  it('goes on with one branch when its reader destroys the other', async () => {
    const { stream, digest } = source();
    const [kept, dropped] = tee(stream);
    dropped.destroy();
    expect(await digestOf(kept)).toBe(digest);
  });

  it('errors both branches when the source fails', async () => {
    const failing = new Readable({ read() {} });
    const [a, b] = tee(failing);
    const reads = [digestOf(a), digestOf(b)];
    failing.push(Buffer.from('partial'));
    failing.destroy(new Error('connection reset'));
    for (const read of reads) await expect(read).rejects.toThrow('connection reset');
  });
});

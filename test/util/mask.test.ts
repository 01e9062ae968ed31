import { describe, expect, it } from 'vitest';
import { StreamMasker } from '../../src/util/mask.js';

/** Every occurrence of every pattern, overlapping ones joined, each joined run replaced once. */
function maskAtOnce(text: string, patterns: string[]): string {
  const spans: Array<[number, number]> = [];
  for (const p of patterns) {
    if (!p) continue;
    for (let i = text.indexOf(p); i >= 0; i = text.indexOf(p, i + 1)) spans.push([i, i + p.length]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  let out = '';
  let at = 0;
  for (let i = 0; i < spans.length; ) {
    let [start, end] = spans[i] as [number, number];
    for (i++; i < spans.length && (spans[i] as [number, number])[0] < end; i++) end = Math.max(end, (spans[i] as [number, number])[1]);
    out += `${text.slice(at, start)}***`;
    at = end;
  }
  return out + text.slice(at);
}

function maskInChunks(text: string, patterns: string[], cuts: number[]): string {
  const masker = new StreamMasker(patterns.map((p) => Buffer.from(p)));
  const parts: Buffer[] = [];
  let at = 0;
  for (const cut of [...cuts, text.length]) {
    parts.push(masker.write(Buffer.from(text.slice(at, cut))));
    at = cut;
  }
  parts.push(masker.end());
  return Buffer.concat(parts).toString();
}

interface RandomCases {
  seed: number;
  rounds: number;
  alphabet: string;
  /** At most this many patterns of at most `patternLength` bytes, a text of at most `textLength`. */
  patterns: number;
  patternLength: number;
  textLength: number;
  cuts: number;
}

function compareOnRandomCases(c: RandomCases): void {
  let seed = c.seed;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const word = (n: number) => Array.from({ length: n }, () => c.alphabet[random(c.alphabet.length)]).join('');
  for (let round = 0; round < c.rounds; round++) {
    const patterns = Array.from({ length: 1 + random(c.patterns) }, () => word(1 + random(c.patternLength)));
    const text = word(random(c.textLength));
    const cuts = Array.from({ length: random(c.cuts) }, () => random(text.length + 1)).sort((a, b) => a - b);
    expect(maskInChunks(text, patterns, cuts), JSON.stringify({ text, patterns, cuts })).toBe(maskAtOnce(text, patterns));
  }
}

describe('StreamMasker', () => {
  it('replaces each occurrence, joins overlapping ones, and leaves the rest byte for byte', () => {
    expect(maskInChunks('token=hunter2; again hunter2.', ['hunter2'], [])).toBe('token=***; again ***.');
    // Adjacent occurrences stay two; overlapping ones (of one pattern or of several) are one.
    expect(maskInChunks('xhunter2hunter2x', ['hunter2'], [])).toBe('x******x');
    expect(maskInChunks('abcdef', ['bc', 'abcd', 'def'], [])).toBe('***');
    expect(maskInChunks('aaaaa', ['aaa'], [])).toBe('***');
    // The start of a pattern that never completes is shown as it was.
    expect(maskInChunks('ab hunt', ['abcd', 'hunter2'], [1])).toBe('ab hunt');
    expect(maskInChunks('nothing to hide', [], [3])).toBe('nothing to hide');
  });

  it('holds back only what may still become an occurrence', () => {
    const masker = new StreamMasker([Buffer.from('hunter2')]);
    expect(masker.write(Buffer.from('pass: hun')).toString()).toBe('pass: ');
    expect(masker.write(Buffer.from('ter2 and hunt')).toString()).toBe('*** and ');
    expect(masker.write(Buffer.from('ing')).toString()).toBe('hunting');
    expect(masker.write(Buffer.from('hunter')).toString()).toBe('');
    expect(masker.end().toString()).toBe('hunter');
  });

  it('agrees with masking the whole text at once, for random texts, patterns and chunkings', () => {
    // A small alphabet: patterns overlap, nest and repeat often.
    compareOnRandomCases({ seed: 7, rounds: 3000, alphabet: 'abc', patterns: 4, patternLength: 5, textLength: 40, cuts: 6 });
  });

  it('agrees with masking at once for many short patterns over a large alphabet (nodes with many children)', () => {
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
    compareOnRandomCases({ seed: 11, rounds: 200, alphabet, patterns: 200, patternLength: 3, textLength: 300, cuts: 10 });
  });

  it('masks binary patterns and many patterns at once', () => {
    const patterns = Array.from({ length: 300 }, (_, i) => `secret-${i}-${'x'.repeat(i % 17)}`);
    const text = patterns.map((p, i) => `line ${i}: ${p}\n`).join('');
    const cuts = Array.from({ length: 50 }, (_, i) => i * 97);
    expect(maskInChunks(text, patterns, cuts)).toBe(patterns.map((_, i) => `line ${i}: ***\n`).join(''));
    const bytes = new StreamMasker([Buffer.from([0, 0xff, 0])]);
    expect(Buffer.concat([bytes.write(Buffer.from([1, 0, 0xff])), bytes.write(Buffer.from([0, 2])), bytes.end()])).toEqual(
      Buffer.from([1, ...Buffer.from('***'), 2]),
    );
  });
});

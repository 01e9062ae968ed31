// The files list a step's key records (FileList): past MAX_LISTED_FILES, one digest per directory.
// Those digests are compared with the ones earlier builds recorded, so their bytes must not drift,
// and the order the walk reports files in must not change them.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FileList, MAX_LISTED_FILES } from '../../src/solver/explain.js';

type Entry = [rel: string, kind: string, content: string];

/** 12 packages of 100 files, each package and file named in byte order as a walk reports them. */
function tree(): Entry[] {
  const out: Entry[] = [['README.md', 'file 644', `sha256:${'a'.repeat(64)}`]];
  for (let p = 10; p < 22; p++) {
    out.push([`pkg${p}`, 'dir 755', '']);
    for (let f = 100; f < 200; f++) out.push([`pkg${p}/f${f}.js`, 'file 644', `sha256:${createHash('sha256').update(`${p}/${f}`).digest('hex')}`]);
  }
  return out;
}

function listOf(entries: Entry[]): FileList {
  const list = new FileList();
  for (const [rel, kind, content] of entries) list.add(rel, kind, content);
  return list;
}

/** The digest a directory's summary holds: its entries' lines, content digests cut to 16 digits. */
function summaryOf(entries: Entry[]): string {
  const hash = createHash('sha256');
  for (const [rel, kind, content] of entries) hash.update(`${rel}\0${kind}\0${content.slice(0, 'sha256:'.length + 16)}\n`);
  return `sha256:${hash.digest('hex').slice(0, 16)}`;
}

describe('FileList past the bound', () => {
  it('records one digest per top-level directory, over its entries in path order', () => {
    const entries = tree();
    expect(entries.length).toBeGreaterThan(MAX_LISTED_FILES);
    const { files, summarised } = listOf(entries).result();
    expect(summarised).toBe(true);
    expect(Object.keys(files!)).toEqual(['README.md', ...Array.from({ length: 12 }, (_, i) => [`pkg${10 + i}`, `pkg${10 + i}/`]).flat()]);
    expect(files!['README.md']).toEqual(['file 644', `sha256:${'a'.repeat(16)}`]);
    expect(files!['pkg10']).toEqual(['dir 755', '']);
    expect(files!['pkg13/']).toEqual(['summary', summaryOf(entries.filter(([rel]) => rel.startsWith('pkg13/')))]);
  });

  it('gives the same list whatever order the files came in, a path added twice counting as last added', () => {
    const entries = tree();
    const shuffled = [...entries].reverse();
    // Two sources naming one file: the first read is stale, the last one counts.
    const stale: Entry = ['pkg15/f150.js', 'file 644', `sha256:${'0'.repeat(64)}`];
    const inOrder = listOf(entries).result();
    expect(listOf([stale, ...shuffled]).result()).toEqual(inOrder);
    expect(listOf([...shuffled, stale]).result()).not.toEqual(inOrder);
  });
});

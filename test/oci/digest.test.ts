// The digest helpers against independent computations: coreutils' sha256sum for bytes, and the
// OCI image spec's ChainID recurrence written out by hand.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson, chainIDs, isSha256Digest, sha256 } from '../../src/oci/digest.js';
import type { Digest } from '../../src/oci/types.js';

describe('sha256', () => {
  it('matches sha256sum for strings (as UTF-8) and bytes', () => {
    const text = 'FROM busybox\nRUN echo ä\n';
    const expected = `sha256:${execFileSync('sha256sum', { input: text }).toString().split(' ')[0]}`;
    expect(sha256(text)).toBe(expected);
    expect(sha256(Buffer.from(text, 'utf8'))).toBe(expected);
    expect(isSha256Digest(expected)).toBe(true);
  });

  it('accepts only lower-case sha256 digests of full length', () => {
    expect(isSha256Digest(`sha256:${'A'.repeat(64)}`)).toBe(false);
    expect(isSha256Digest(`sha256:${'a'.repeat(63)}`)).toBe(false);
    expect(isSha256Digest(`sha512:${'a'.repeat(64)}`)).toBe(false);
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every depth, keeps array order, adds no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
  });

  it('gives equal objects built in a different order the same digest', () => {
    expect(sha256(canonicalJson({ op: { type: 'scratch' }, inputs: [] }))).toBe(sha256(canonicalJson({ inputs: [], op: { type: 'scratch' } })));
  });
});

describe('chainIDs', () => {
  it('follows the OCI image spec', () => {
    const d = (c: string): Digest => `sha256:${c.repeat(64)}`;
    const [a, b, c] = [d('a'), d('b'), d('c')];
    const ab: Digest = `sha256:${createHash('sha256').update(`${a} ${b}`).digest('hex')}`;
    const abc: Digest = `sha256:${createHash('sha256').update(`${ab} ${c}`).digest('hex')}`;
    expect(chainIDs([])).toEqual([]);
    expect(chainIDs([a])).toEqual([a]);
    expect(chainIDs([a, b, c])).toEqual([a, ab, abc]);
  });
});

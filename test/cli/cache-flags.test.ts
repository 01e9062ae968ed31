// --cache-to and --cache-from as buildx writes them, and the errors a mistyped one gets.

import { describe, expect, it } from 'vitest';
import { parseCacheFromFlag, parseCacheToFlag } from '../../src/cli/cache-flags.js';

describe('cache flags', () => {
  it('reads every export type with its defaults', () => {
    expect(parseCacheToFlag('type=registry,ref=r.example/app:cache,mode=max,compression=zstd')).toEqual({
      type: 'registry',
      ref: 'r.example/app:cache',
      mode: 'max',
      compression: 'zstd',
    });
    expect(parseCacheToFlag('r.example/app:cache')).toEqual({ type: 'registry', ref: 'r.example/app:cache', mode: 'min', compression: 'gzip' });
    expect(parseCacheToFlag('type=local,dest=out/cache,tag=v1')).toEqual({ type: 'local', dest: 'out/cache', tag: 'v1', mode: 'min', compression: 'gzip' });
    expect(parseCacheToFlag('type=inline')).toEqual({ type: 'inline' });
  });

  it('reads every import type', () => {
    expect(parseCacheFromFlag('r.example/app:cache')).toEqual({ type: 'registry', ref: 'r.example/app:cache' });
    expect(parseCacheFromFlag('ref=r.example/app:cache')).toEqual({ type: 'registry', ref: 'r.example/app:cache' });
    expect(parseCacheFromFlag('type=local,src=cache')).toEqual({ type: 'local', src: 'cache' });
  });

  it.each([
    ['type=registry', 'invalid --cache-to "type=registry": type=registry needs ref=REGISTRY/REPOSITORY:TAG'],
    ['type=local,mode=max', 'invalid --cache-to "type=local,mode=max": type=local needs dest=DIRECTORY'],
    ['type=registry,ref=a/b,mode=all', 'invalid --cache-to "type=registry,ref=a/b,mode=all": mode must be min or max, not "all"'],
    ['type=inline,mode=max', 'an inline cache is min mode only'],
    ['type=gha', 'unsupported type "gha": use registry, local or inline'],
    ['type=registry,ref=a/b,colour=red', 'unknown key "colour"'],
    ['type=registry,"ref=a', 'unterminated quote in field 2'],
  ])('refuses --cache-to %s', (value, message) => {
    expect(() => parseCacheToFlag(value)).toThrow(message);
  });

  it.each([
    ['type=local', 'type=local needs src=DIRECTORY'],
    ['type=inline', 'unsupported type "inline"'],
    ['type=registry,ref=a/b,mode=max', 'unknown key "mode"'],
  ])('refuses --cache-from %s', (value, message) => {
    expect(() => parseCacheFromFlag(value)).toThrow(message);
  });
});

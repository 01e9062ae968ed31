import { describe, expect, it } from 'vitest';
import { parseDockerignore } from '../../src/frontend/index.js';

describe('parseDockerignore', () => {
  it('follows Docker rules: comments, blanks, trimming, cleaning, leading / and ! exceptions', () => {
    const text = [
      '\uFEFF# comment',
      '',
      '   ',
      'node_modules',
      '  dist/  ',
      '/abs/path',
      './rel/../other//file',
      '!  keep.txt',
      '!/abs-keep',
      '**/*.log',
      '  # not a comment once indented',
      '/',
      '!',
    ].join('\r\n');
    expect(parseDockerignore(text)).toEqual([
      'node_modules',
      'dist',
      'abs/path',
      'other/file',
      '!keep.txt',
      '!abs-keep',
      '**/*.log',
      '# not a comment once indented',
      '/',
      '!',
    ]);
  });

  it('returns nothing for an empty file', () => {
    expect(parseDockerignore('')).toEqual([]);
  });
});

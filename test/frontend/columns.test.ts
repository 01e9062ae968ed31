// Errors point at the column where that helps (an unknown flag among several words).
import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../../src/frontend/index.js';
import { build, rejection } from './helpers.js';

describe('error columns', () => {
  it('an unknown flag is pointed at', async () => {
    const err = (await rejection(build('FROM alpine:3.19\nCOPY --chwon=1 a /a'))) as DockerfileError;
    expect(err.column).toBe(6);
    expect(err.format()).toBe(
      ['Dockerfile:2: COPY: unknown flag: --chwon (did you mean --chown?)', '  2 | COPY --chwon=1 a /a', '    |      ^'].join('\n'),
    );
  });
});

import { describe, expect, it } from 'vitest';
import { DockerfileError } from '../../src/frontend/index.js';
import { build, fakeResolver, rejection } from './helpers.js';

async function failure(text: string, opts: Parameters<typeof build>[1] = {}): Promise<DockerfileError> {
  const err = await rejection(build(text, opts));
  expect(err).toBeInstanceOf(DockerfileError);
  return err as DockerfileError;
}

describe('errors name the line', () => {
  it('rejects an unknown instruction with a suggestion, before resolving any image', async () => {
    const resolve = fakeResolver();
    const err = await failure('FROM alpine\nRUN true\n\nRUNN echo hi', { resolveImage: resolve });
    expect(err.message).toBe('Dockerfile:4: unknown instruction "RUNN" (did you mean RUN?)');
    expect(err.line).toBe(4);
    expect(err.source).toEqual(['RUNN echo hi']);
    expect(resolve.calls).toEqual([]);
  });

  it('rejects unknown instructions even in stages the target does not need', async () => {
    const err = await failure('FROM alpine AS a\nCOPPY x y\nFROM alpine\nRUN true');
    expect(err.message).toBe('Dockerfile:2: unknown instruction "COPPY" (did you mean COPY?)');
  });

  it('rejects COPY --from a stage name that does not exist, suggesting the close one', async () => {
    const text = ['FROM node AS builder', 'RUN npm run build', 'FROM alpine', 'WORKDIR /app', 'COPY --from=buildr /srv/dist ./dist'].join('\n');
    const err = await failure(text);
    expect(err.line).toBe(5);
    expect(err.message).toMatch(/^Dockerfile:5: COPY --from=buildr: no stage named "buildr" \(did you mean "builder"\?\)/);
    expect(err.message).toContain('looks like a misspelt stage name');
  });

  it('COPY --from an image reference resolves the image, and says so when it cannot', async () => {
    const err = await failure('FROM alpine\nCOPY --from=nginx:latest /etc/nginx /etc/nginx');
    expect(err.message).toMatch(/^Dockerfile:2: COPY --from=nginx:latest: there is no stage named "nginx:latest", so it was taken as an image, which could not be resolved: pull access denied/);
  });

  it('rejects --from cycles (naming the COPY lines), an invalid index, or a variable', async () => {
    expect((await failure('FROM alpine AS stage0\nCOPY --from=stage0 f1 /sub/')).message).toBe(
      'Dockerfile:2: circular dependency detected on stage: stage0 (stage0 -> stage0, through COPY --from on line 2)',
    );
    const three = 'FROM alpine AS stage0\nCOPY --from=stage2 f1 /sub/\nFROM alpine AS stage1\nCOPY --from=stage0 f2 /sub/\nFROM alpine AS stage2\nCOPY --from=stage1 f2 /sub/';
    expect((await failure(three)).message).toBe(
      'Dockerfile:2: circular dependency detected on stage: stage0 (stage0 -> stage2 -> stage1 -> stage0, through COPY --from on lines 2, 6, 4)',
    );
    expect((await failure('FROM alpine\nCOPY --from=3 /x /x')).message).toMatch(/^Dockerfile:2: COPY --from=3: invalid stage index 3/);
    expect((await failure('ARG S=a\nFROM alpine AS a\nFROM alpine\nCOPY --from=$S /x /x')).message).toMatch(
      /^Dockerfile:4: COPY --from=\$S: variable expansion is not supported for --from/,
    );
  });

  it('lists the stages when the target is unknown', async () => {
    const err = await failure('FROM alpine AS base\nFROM base AS build\nFROM scratch AS final', { target: 'biuld' });
    expect(err.message).toBe('Dockerfile: target stage "biuld" could not be found (did you mean "build"?); stages in Dockerfile: base, build, final');
  });

  it('rejects duplicate stage names, case-insensitively', async () => {
    const err = await failure('FROM alpine AS build\nRUN a\nFROM alpine AS Build\nRUN b');
    expect(err.message).toBe('Dockerfile:3: duplicate stage name "build" (already used on line 1)');
  });

  it('rejects invalid stage names and malformed FROM lines', async () => {
    expect((await failure('FROM alpine AS 1st')).message).toMatch(/^Dockerfile:1: invalid name for build stage: "1st"/);
    expect((await failure('FROM alpine AS')).message).toMatch(/^Dockerfile:1: FROM requires either one or three arguments/);
  });

  it('rejects instructions before the first FROM other than ARG', async () => {
    expect((await failure('ARG A=1\nENV B=2\nFROM alpine')).message).toBe('Dockerfile:2: ENV cannot come before the first FROM (only ARG can)');
  });

  it('rejects unknown or malformed flags', async () => {
    expect((await failure('FROM alpine\nCOPY --form=x a b')).message).toBe('Dockerfile:2: COPY: unknown flag: --form (did you mean --from?)');
    expect((await failure('FROM alpine\nWORKDIR --x=1 /a')).message).toBe('Dockerfile:2: WORKDIR: unknown flag: --x (WORKDIR takes no flags)');
    expect((await failure('FROM alpine\nCOPY --from a b')).message).toMatch(/missing a value on flag --from/);
  });

  it('rejects what is not supported yet, naming the line', async () => {
    expect((await failure('FROM alpine\nADD git@github.com:moby/buildkit.git /src')).message).toMatch(/^Dockerfile:2: ADD git@github.com:moby\/buildkit.git: adding a Git repository is not supported yet/);
    expect((await failure('FROM alpine\nRUN --device=/dev/fuse make')).message).toBe('Dockerfile:2: RUN --device is not supported yet');
  });

  it('reports variable expansion errors with the line', async () => {
    const err = await failure('FROM alpine\nARG REQUIRED\nWORKDIR ${REQUIRED:?set --build-arg REQUIRED}');
    expect(err.message).toMatch(/^Dockerfile:3: WORKDIR: failed to process .*REQUIRED: set --build-arg REQUIRED/);
  });

  it('rejects ${VAR:#…} and ${VAR:%…} forms as BuildKit does, naming the line', async () => {
    const err = await failure('FROM alpine\nARG V=abc\nENV E=${V:#a}\n');
    expect(err.message).toBe('Dockerfile:3: ENV: failed to process "${V:#a}": unsupported modifier (:#) in substitution');
    expect((await failure('FROM alpine\nARG V=abc\nWORKDIR /${V:%%c}\n')).message).toBe(
      'Dockerfile:3: WORKDIR: failed to process "/${V:%%c}": unsupported modifier (:%) in substitution',
    );
  });

  it('reports a base image that cannot be resolved, suggesting a stage with a close name', async () => {
    const err = await failure('FROM alpine AS builder\nFROM buildr\nRUN true');
    expect(err.message).toMatch(/^Dockerfile:2: FROM buildr: pull access denied .* \(did you mean the stage "builder"\?\)$/);
  });

  it('rejects an empty base name after ARG expansion', async () => {
    expect((await failure('ARG BASE\nFROM $BASE')).message).toMatch(/^Dockerfile:2: FROM \$BASE: the base name is empty/);
  });

  it('formats a printable message with the source lines and no stack', async () => {
    const err = await failure('FROM alpine\nRUN echo a \\\n  && echo b\nFROOM x');
    expect(err.format()).toBe(['Dockerfile:4: unknown instruction "FROOM" (did you mean FROM?)', '  4 | FROOM x'].join('\n'));
    const multi = new DockerfileError('bad', { file: 'Dockerfile.dev', line: 9, endLine: 10, source: ['RUN a \\', '  b'] });
    expect(multi.format()).toBe(['Dockerfile.dev:9: bad', '   9 | RUN a \\', '  10 |   b'].join('\n'));
    const col = new DockerfileError('bad', { file: 'Dockerfile', line: 2, column: 5, source: 'RUN x' });
    expect(col.format()).toBe(['Dockerfile:2: bad', '  2 | RUN x', '    |     ^'].join('\n'));
    expect(err.format()).not.toContain(' at ');
  });

  it('quotes a huge instruction clipped: a few lines, each cut short', async () => {
    const lines = Array.from({ length: 40 }, (_, i) => `  && echo ${String(i).repeat(50_000)} \\`);
    const err = new DockerfileError('bad', { file: 'Dockerfile', line: 2, endLine: 41, source: ['RUN true \\', ...lines] });
    const text = err.format();
    expect(text.length).toBeLessThan(12 * 1100);
    expect(text.split('\n')).toHaveLength(1 + 10 + 1);
    expect(text).toMatch(/\[\.\.\. \d+ more characters\]/);
    expect(text.split('\n').at(-1)).toMatch(/\| \[\.\.\. 31 more lines\]$/);
  });
});

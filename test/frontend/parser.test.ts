import { describe, expect, it } from 'vitest';
import { DockerfileError, parseDockerfile, parseWords } from '../../src/frontend/index.js';
import { build } from './helpers.js';

function only(text: string) {
  const df = parseDockerfile(text);
  expect(df.instructions).toHaveLength(1);
  return df.instructions[0]!;
}

describe('parser directives', () => {
  it('reads syntax and escape directives at the top', () => {
    const df = parseDockerfile('# syntax=docker/dockerfile:1\n#escape = `\nFROM scratch\n');
    expect(df.directives).toEqual({ syntax: 'docker/dockerfile:1', escape: '`' });
    expect(df.escape).toBe('`');
  });

  it('stops looking for directives after a blank line, a comment or an instruction', () => {
    expect(parseDockerfile('\n# escape=`\nFROM scratch').escape).toBe('\\');
    expect(parseDockerfile('# hello\n# escape=`\nFROM scratch').escape).toBe('\\');
    expect(parseDockerfile('FROM scratch\n# escape=`\n').directives).toEqual({});
  });

  it('rejects a repeated directive and an invalid escape character', () => {
    expect(() => parseDockerfile('# escape=`\n# escape=\\\nFROM scratch')).toThrow(/Dockerfile:2: only one escape parser directive/);
    expect(() => parseDockerfile('# escape=x\nFROM scratch')).toThrow(/Dockerfile:1: invalid escape token 'x'/);
  });

  it('strips a byte-order mark and CRLF line endings', () => {
    const df = parseDockerfile('\uFEFF# escape=`\r\nFROM scratch\r\nRUN a `\r\n  b\r\n');
    expect(df.escape).toBe('`');
    expect(df.instructions.map((i) => i.original)).toEqual(['FROM scratch', 'RUN a   b']);
  });
});

describe('parser lines', () => {
  it('skips comments and blank lines and records line ranges', () => {
    const df = parseDockerfile('# comment\n\nFROM scratch AS base\n   # indented comment\nENV A=1\n');
    expect(df.instructions.map((i) => [i.keyword, i.startLine, i.endLine])).toEqual([
      ['FROM', 3, 3],
      ['ENV', 5, 5],
    ]);
  });

  it('joins continuation lines, skipping comment and empty lines inside like Docker', () => {
    const df = parseDockerfile(
      ['FROM scratch', 'RUN apt-get update && \\', '  # install things', '', '    apt-get install -y curl \\  ', '    && echo done', 'USER app'].join('\n'),
    );
    const run = df.instructions[1]!;
    expect(run.keyword).toBe('RUN');
    expect(run.args).toBe('apt-get update &&     apt-get install -y curl     && echo done');
    expect([run.startLine, run.endLine]).toEqual([2, 6]);
    expect(df.instructions[2]!.startLine).toBe(7);
    expect(df.warnings).toEqual([{ line: 2, message: expect.stringContaining('empty continuation line'), rule: 'NoEmptyContinuation' }]);
  });

  it('continues with the escape directive character', () => {
    const df = parseDockerfile('# escape=`\nFROM scratch\nRUN dir C:\\Windows `\n  /b\n');
    expect(df.instructions[1]!.args).toBe('dir C:\\Windows   /b');
  });

  it('a doubled escape at the end of a line is an escaped escape, not a continuation', async () => {
    const text = 'FROM scratch\nENV C trailing\\\\backslash\\\\\nENV D=x\n';
    expect(parseDockerfile(text).instructions.map((i) => i.original)).toEqual(['FROM scratch', 'ENV C trailing\\\\backslash\\\\', 'ENV D=x']);
    // As Docker's image: the value ends with one backslash, and D is set by its own instruction.
    expect((await build(text)).image.config.Env).toEqual(expect.arrayContaining(['C=trailing\\backslash\\', 'D=x']));
    const backtick = '# escape=`\nFROM scratch\nENV C trailing``backslash``\nENV D=x\n';
    expect(parseDockerfile(backtick).instructions).toHaveLength(3);
    expect((await build(backtick)).image.config.Env).toEqual(expect.arrayContaining(['C=trailing`backslash`', 'D=x']));
    // A single escape still continues, also alone on its line; BuildKit's rule looks at one
    // character before it, so an escaped escape followed by a continuation does not continue.
    expect(parseDockerfile('FROM scratch\nRUN a \\\n\\\n b\n').instructions[1]!.args).toBe('a  b');
    expect(parseDockerfile('FROM scratch\nRUN a\\\\\\\nRUN b\n').instructions).toHaveLength(3);
  });

  it('refuses a line longer than BuildKit reads (65535 bytes), naming it', () => {
    const label = (bytes: number) => `LABEL a=${'x'.repeat(bytes - 'LABEL a='.length)}`;
    expect(parseDockerfile(`FROM scratch\n${label(65_535)}\n`).instructions).toHaveLength(2);
    expect(() => parseDockerfile(`FROM scratch\n${label(65_536)}\nRUN x\n`, 'Dockerfile.dev')).toThrow(
      'Dockerfile.dev:2: dockerfile line greater than max allowed size of 65535 (this line has 65536 bytes; split the instruction over several lines with line continuations)',
    );
    // Bytes, as the scanner counts them: 32,768 two-byte characters are too many; a \r counts too.
    expect(() => parseDockerfile(`FROM scratch\nLABEL a=${'é'.repeat(32_768)}\n`)).toThrow(/:2: dockerfile line greater than max allowed size/);
    expect(() => parseDockerfile(`FROM scratch\r\n${label(65_535)}\r\n`)).toThrow(/:2: dockerfile line greater than max allowed size/);
    // An instruction may still be longer when it is continued over several lines.
    const long = parseDockerfile(`FROM scratch\n${label(60_000)} \\\n  b=${'y'.repeat(60_000)}\n`);
    expect(long.instructions[1]!.args.length).toBeGreaterThan(110_000);
  });

  it('keeps a trailing continuation at end of file', () => {
    expect(parseDockerfile('FROM scratch\nRUN echo hi \\').instructions[1]!.args).toBe('echo hi');
  });

  it('treats a # after the start of a line as part of the arguments', () => {
    expect(only('RUN echo hi # not a comment').args).toBe('echo hi # not a comment');
  });

  it('matches instruction names case-insensitively', () => {
    const df = parseDockerfile('from scratch AS x\nrUn echo hi\nCopy a b');
    expect(df.instructions.map((i) => i.keyword)).toEqual(['FROM', 'RUN', 'COPY']);
    expect(df.instructions[1]!.original).toBe('rUn echo hi');
  });

  it('keeps unknown instructions for the compiler to reject', () => {
    expect(only('RUNN echo').keyword).toBe('RUNN');
  });

  it('rejects a file without instructions', () => {
    expect(() => parseDockerfile('# just a comment\n\n')).toThrow(DockerfileError);
  });
});

describe('parser forms and flags', () => {
  it('parses JSON exec form', () => {
    const i = only('CMD ["node", "server.js"]');
    expect(i.json).toEqual(['node', 'server.js']);
    expect(i.args).toBe('["node", "server.js"]');
  });

  it('falls back to shell form when the JSON is invalid, as Docker does', () => {
    expect(only("CMD ['node', 'server.js']").json).toBeUndefined();
    expect(only('RUN ["echo", "hi"] && true').json).toBeUndefined();
    expect(only('ENTRYPOINT [ "a"').json).toBeUndefined();
    expect(only('RUN echo [x]').json).toBeUndefined();
  });

  it('only tries JSON for instructions that have an exec form', () => {
    expect(only('LABEL ["a"]').json).toBeUndefined();
    expect(only('COPY ["a b", "/c/"]').json).toEqual(['a b', '/c/']);
    expect(only('HEALTHCHECK --interval=5s CMD ["curl", "-f", "x"]').json).toEqual(['curl', '-f', 'x']);
  });

  it('rejects a JSON array that holds non-strings', () => {
    expect(() => parseDockerfile('FROM scratch\nCMD [1, 2]')).toThrow(/Dockerfile:2: CMD: when using JSON array syntax, arrays must be comprised of strings only/);
  });

  it('extracts leading --flags, removing quotes', () => {
    const i = only('COPY --from=build --chown="app user:staff" --link src/ /app/');
    expect(i.flags).toEqual([{ name: 'from', value: 'build' }, { name: 'chown', value: 'app user:staff' }, { name: 'link' }]);
    expect(i.args).toBe('src/ /app/');
  });

  it('escapes in flag values with the escape directive character', () => {
    expect(only('COPY --from=a\\b --chown="c\\"d" x y').flags).toEqual([{ name: 'from', value: 'ab' }, { name: 'chown', value: 'c"d' }]);
    const df = parseDockerfile('# escape=`\nFROM scratch\nCOPY --from=C:\\stage --chown="a\\b ``q`"" x y\n');
    expect(df.instructions[1]!.flags).toEqual([{ name: 'from', value: 'C:\\stage' }, { name: 'chown', value: 'a\\b `q"' }]);
    const onbuild = parseDockerfile('# escape=`\nFROM scratch\nONBUILD COPY --from=x\\y a b\n');
    expect(onbuild.instructions[1]!.trigger!.flags).toEqual([{ name: 'from', value: 'x\\y' }]);
  });

  it('stops at the first non-flag word and at --', () => {
    expect(only('RUN echo --not-a-flag').flags).toEqual([]);
    const i = only('RUN --network=none -- --weird-command');
    expect(i.flags).toEqual([{ name: 'network', value: 'none' }]);
    expect(i.args).toBe('--weird-command');
  });

  it('parses flags before a JSON form', () => {
    const i = only('RUN --network=none ["echo", "hi"]');
    expect(i.flags).toEqual([{ name: 'network', value: 'none' }]);
    expect(i.json).toEqual(['echo', 'hi']);
  });

  it('parses an ONBUILD trigger like an instruction', () => {
    const i = only('ONBUILD copy --chown=1 ["a", "b"]');
    expect(i.trigger).toMatchObject({ keyword: 'COPY', flags: [{ name: 'chown', value: '1' }], json: ['a', 'b'] });
  });
});

describe('parseWords', () => {
  it('splits on unquoted blanks and keeps quotes and escapes for expansion', () => {
    expect(parseWords('a=1 b="two words" c=\'x y\' d=e\\ f', '\\')).toEqual(['a=1', 'b="two words"', "c='x y'", 'd=e\\ f']);
    expect(parseWords('  x  ""  ', '\\')).toEqual(['x', '""']);
    expect(parseWords('a=`"b', '`')).toEqual(['a=`"b']);
  });
});

// docker run's rules for the command line, the environment, env files and -v, as run() applies them.

import { describe, expect, it } from 'vitest';
import { commandLine, mergeEnv, parseEnvFile, parseVolumeFlag } from '../../src/client/run-config.js';

describe('commandLine', () => {
  const image = { Entrypoint: ['echo', 'ep'], Cmd: ['default'] };

  it('joins ENTRYPOINT and CMD; arguments replace CMD only', () => {
    expect(commandLine(image, undefined, [])).toEqual(['echo', 'ep', 'default']);
    expect(commandLine(image, undefined, ['a', 'b'])).toEqual(['echo', 'ep', 'a', 'b']);
  });

  it('--entrypoint replaces ENTRYPOINT and drops CMD; "" clears it', () => {
    expect(commandLine(image, 'sh', [])).toEqual(['sh']);
    expect(commandLine(image, 'sh', ['-c', 'exit 1'])).toEqual(['sh', '-c', 'exit 1']);
    expect(commandLine(image, '', ['echo', 'hi'])).toEqual(['echo', 'hi']);
    expect(() => commandLine(image, '', [])).toThrow(/no command specified/);
  });
});

describe('mergeEnv', () => {
  it('overrides by name in order; a bare name is taken from the host, or unsets', () => {
    const env = mergeEnv(['PATH=/bin', 'FOO=image', 'GONE=1'], ['FOO=file', 'FOO=flag', 'FROMHOST', 'GONE', 'NEW=a=b'], { FROMHOST: 'h' });
    expect(env).toEqual(['PATH=/bin', 'FOO=flag', 'FROMHOST=h', 'NEW=a=b']);
  });

  it('refuses a variable without a name', () => {
    expect(() => mergeEnv([], ['=x'])).toThrow(/missing name/);
  });
});

describe('parseEnvFile', () => {
  it("reads docker's format: values as written, bare names from the host, comments and blank lines skipped", () => {
    const text = '\uFEFF# comment\n  A=1 \nB= two words \r\nHOME\nUNSET\n\n   # indented comment\nC=\n';
    expect(parseEnvFile(text, 'app.env', { HOME: '/h' })).toEqual(['A=1 ', 'B= two words ', 'HOME=/h', 'C=']);
  });

  it('names the file and line of a bad variable name', () => {
    expect(() => parseEnvFile('A=1\nBAD KEY=1\n', 'app.env')).toThrow('app.env, line 2: variable name "BAD KEY" contains whitespace');
    expect(() => parseEnvFile('=1\n', 'app.env')).toThrow('app.env, line 1: no variable name');
  });
});

describe('parseVolumeFlag', () => {
  it('reads HOST:CONTAINER[:ro|rw]', () => {
    expect(parseVolumeFlag('/src:/app')).toEqual({ source: '/src', target: '/app', readonly: false });
    expect(parseVolumeFlag('./src:/app:ro')).toEqual({ source: './src', target: '/app', readonly: true });
  });

  it('refuses named volumes, relative container paths and unknown modes', () => {
    expect(() => parseVolumeFlag('data:/app')).toThrow(/named volumes are not supported/);
    expect(() => parseVolumeFlag('/src:app')).toThrow(/must be absolute/);
    expect(() => parseVolumeFlag('/src:/app:z')).toThrow(/unknown mode "z"/);
    expect(() => parseVolumeFlag('/src')).toThrow(/HOST-PATH:CONTAINER-PATH/);
  });
});

import { describe, expect, it } from 'vitest';
import type { LogEvent, ProgressEvent } from '../../src/progress.js';
import { StepOutput } from '../../src/solver/step-output.js';

type Stream = 'stdout' | 'stderr';

/** A StepOutput fed `writes`, then ended: what the progress views got per stream, and the tail. */
function run(secrets: string[], writes: Array<[Stream, string | Buffer]>, limit?: number) {
  const events: ProgressEvent[] = [];
  const output = new StepOutput('step', (e) => events.push(e), limit, secrets.map((s) => Buffer.from(s)));
  for (const [stream, chunk] of writes) output.write(stream, Buffer.from(chunk));
  output.end();
  const logs = events.filter((e): e is LogEvent => e.type === 'log');
  const text = (stream: Stream) => logs.filter((e) => e.stream === stream).map((e) => e.data).join('');
  return { stdout: text('stdout'), stderr: text('stderr'), tail: output.lastLines() };
}

const TOKEN = 'ghp_Zq8dJ1nR4vT6yB0cX3mK';
const PEM = [
  '-----BEGIN OPENSSH PRIVATE KEY-----',
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
  'QyNTUxOQAAACDx2tC9J0pXKZzr9h1U1wQd4R7k2yH1a8z9hVtq3n0ZbwAAAJg7bm9uZQAA',
  '-----END OPENSSH PRIVATE KEY-----',
  '',
].join('\n');

describe('StepOutput without secrets', () => {
  it('shows the output as it came, and the last lines for an error', () => {
    const r = run([], [['stdout', 'one\ntw'], ['stdout', 'o\n'], ['stderr', 'oops\n']]);
    expect(r).toEqual({ stdout: 'one\ntwo\n', stderr: 'oops\n', tail: ['one', 'two', 'oops'] });
  });

  it('shows a UTF-8 character cut at the very end of the output when the output ends', () => {
    const e = Buffer.from('é');
    expect(run([], [['stdout', Buffer.concat([Buffer.from('caf'), e.subarray(0, 1)])]]).stdout).toBe('caf\ufffd');
  });
});

describe('StepOutput masks secrets', () => {
  it('in the log of each stream and in the error tail', () => {
    const r = run([TOKEN], [['stdout', `token is ${TOKEN}\n`], ['stderr', `curl: 401 for ${TOKEN}:x-oauth\n`]]);
    expect(r.stdout).toBe('token is ***\n');
    expect(r.stderr).toBe('curl: 401 for ***:x-oauth\n');
    expect(r.tail).toEqual(['token is ***', 'curl: 401 for ***:x-oauth']);
  });

  it('when the value is split between two chunks, at every offset', () => {
    const line = `export TOKEN=${TOKEN} # set\n`;
    const start = line.indexOf(TOKEN);
    for (let cut = 0; cut <= line.length; cut++) {
      const r = run([TOKEN], [['stdout', line.slice(0, cut)], ['stderr', 'between\n'], ['stdout', line.slice(cut)]]);
      expect(r.stdout, `cut at ${cut - start} of the token`).toBe('export TOKEN=*** # set\n');
      expect(r.tail.join('\n')).not.toContain(TOKEN.slice(0, 4));
    }
  });

  it('when the value comes one byte at a time, and when it is cut inside a UTF-8 character', () => {
    const secret = 'pässwörd-ünïcode';
    const bytes = Buffer.from(`[${secret}]`);
    const writes = [...bytes].map((b): [Stream, Buffer] => ['stdout', Buffer.from([b])]);
    expect(run([secret], writes)).toMatchObject({ stdout: '[***]', tail: ['[***]'] });
  });

  it('a multi-line value as a whole and each of its lines alone', () => {
    const lines = PEM.split('\n');
    const r = run([PEM], [['stdout', `key:\n${PEM}done\n`], ['stderr', `bad line: ${lines[2]}\n`]]);
    expect(r.stdout).toBe('key:\n***done\n');
    expect(r.stderr).toBe('bad line: ***\n');
    expect(r.tail).toEqual(['key:', '***done', 'bad line: ***']);
  });

  it('a value with a trailing newline when printed without it', () => {
    expect(run(['s3cr3t\n'], [['stdout', 'pw=s3cr3t;\n']]).stdout).toBe('pw=***;\n');
  });

  it('not by very short lines of a multi-line value alone, which would hide ordinary text', () => {
    const json = '{\n  "token": "abc123xyz"\n}\n';
    const r = run([json], [['stdout', 'config {ok}\n"token": "abc123xyz"\n']]);
    expect(r.stdout).toBe('config {ok}\n***\n');
  });

  it('before the log limit is counted: clipping cuts the masked text, never a secret', () => {
    const secret = 'hunter2-is-not-a-good-password';
    const r = run([secret], [['stdout', `${secret}\n`.repeat(5)]], 10);
    expect(r.stdout).toBe('***\n***\n**\n[output clipped, log limit 10B reached]\n');
    expect(r.tail).toEqual(['***', '***', '***', '***', '***']);
  });

  it('a prefix of a secret at the end of the output is shown once the output ends', () => {
    expect(run([TOKEN], [['stdout', `partial ${TOKEN.slice(0, 10)}`]]).stdout).toBe(`partial ${TOKEN.slice(0, 10)}`);
  });

  it('every one of many secrets, overlapping ones as one', () => {
    const secrets = Array.from({ length: 100 }, (_, i) => `token-${i}-${'k'.repeat(i % 13)}`);
    const r = run([...secrets, 'abcdef', 'cdefgh'], [['stdout', `${secrets.join(' ')} abcdefgh\n`]]);
    expect(r.stdout).toBe(`${secrets.map(() => '***').join(' ')} ***\n`);
  });
});

// What the CLI prints while it builds, as a CI log or a tool reading `--progress json` sees it:
// no build arg value in step names, bounded output for a step that prints a lot, every JSON
// event delivered whole to a slow pipe, and a failed step's error that stays short.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LogEvent, ProgressEvent, StepEvent } from '../../src/progress.js';
import { BUILDER_BIN, events, leftoverContainers, mountsUnder, runBuilder } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('progress-output');

async function context(name: string, dockerfile: string): Promise<string> {
  const dir = join(fx.work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

const build = (root: string, dir: string, ...extra: string[]) => ['build', '--network', 'none', '--root', join(fx.work, root), ...extra, dir];

/** Plain progress lines that are not a step's own output (`#3 0.123 …`). */
const stepLines = (stderr: string) => stderr.split('\n').filter((l) => !/^#\d+ \d+\.\d{3} /.test(l));

describe('secrets in progress', () => {
  it('a build arg used in RUN is not shown in the step name (plain and json), and still reaches the command', async () => {
    const secret = `s3cret-${randomBytes(6).toString('hex')}`;
    const dir = await context('secret', `FROM ${fx.base}\nARG PASSWORD\nRUN echo $PASSWORD\n`);

    const plain = await runBuilder(build('secret-root', dir, '--progress', 'plain', '--build-arg', `PASSWORD=${secret}`));
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stderr).toContain('[2/2] RUN echo $PASSWORD');
    expect(plain.stderr).toMatch(new RegExp(`^#\\d+ \\d+\\.\\d{3} ${secret}$`, 'm')); // the RUN's own output
    expect(stepLines(plain.stderr).filter((l) => l.includes(secret))).toEqual([]);

    // Another value: the same step name, yet the step runs again (the name is not the cache key).
    const other = `${secret}-2`;
    const json = await runBuilder(build('secret-root', dir, '--progress', 'json', '--build-arg', `PASSWORD=${other}`));
    expect(json.code, json.stderr).toBe(0);
    const steps = events(json.stderr).filter((e): e is StepEvent => e.type === 'step');
    expect(steps.filter((e) => e.status === 'started').map((e) => e.name)).toContain('[2/2] RUN echo $PASSWORD');
    expect(steps.filter((e) => JSON.stringify(e).includes(other))).toEqual([]);
    const logs = events(json.stderr).filter((e): e is LogEvent => e.type === 'log');
    expect(logs.map((e) => e.data).join('')).toBe(`${other}\n`);
  });
});

describe('why a step re-ran', () => {
  it('plain prints the reason on the line after the step, JSON carries it; a changed build arg is named, never its value', async () => {
    const secret = `s3cret-${randomBytes(6).toString('hex')}`;
    const dir = await context('reason', `FROM ${fx.base}\nARG TOKEN\nRUN echo $TOKEN > /token\nRUN echo next\n`);
    const first = await runBuilder(build('reason-root', dir, '--progress', 'plain', '--build-arg', `TOKEN=${secret}`));
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/^#(\d+) \[2\/3\] RUN echo \$TOKEN > \/token\n#\1 cache miss: no cache for this step yet$/m);

    const plain = await runBuilder(build('reason-root', dir, '--progress', 'plain', '--build-arg', `TOKEN=${secret}-2`));
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stderr).toMatch(/^#(\d+) \[2\/3\] RUN echo \$TOKEN > \/token\n#\1 cache miss: build arg or ENV TOKEN changed$/m);
    expect(plain.stderr).toMatch(/^#(\d+) \[3\/3\] RUN echo next\n#\1 cache miss: parent step \[2\/3\] RUN echo \$TOKEN > \/token re-ran$/m);
    expect(plain.stderr).not.toContain(secret);

    const json = await runBuilder(build('reason-root', dir, '--progress', 'json', '--build-arg', `TOKEN=${secret}-3`));
    expect(json.code, json.stderr).toBe(0);
    const started = events(json.stderr).filter((e): e is StepEvent => e.type === 'step' && e.status === 'started' && e.name.startsWith('['));
    expect(started.map((e) => [e.name, e.reason])).toEqual([
      ['[2/3] RUN echo $TOKEN > /token', 'build arg or ENV TOKEN changed'],
      ['[3/3] RUN echo next', 'parent step [2/3] RUN echo $TOKEN > /token re-ran'],
    ]);
    expect(json.stderr).not.toContain(secret);

    // --explain-cache says the same without running anything (and --dry-run --explain-cache too).
    for (const extra of [[], ['--dry-run']]) {
      const explained = await runBuilder(build('reason-root', dir, '--explain-cache', ...extra, '--build-arg', `TOKEN=${secret}-4`));
      expect(explained.code, explained.stderr).toBe(0);
      expect(explained.stdout).toMatch(/^\[1\/3\] FROM .*: cached$/m);
      expect(explained.stdout).toContain(
        '[2/3] RUN echo $TOKEN > /token: would run: build arg or ENV TOKEN changed\n' +
          '[3/3] RUN echo next: would run: parent step [2/3] RUN echo $TOKEN > /token would re-run\n' +
          '2 of 3 steps would run\n',
      );
      expect(explained.stdout + explained.stderr).not.toContain(secret);
    }

    // Nothing changed: every step CACHED, no reason printed.
    const again = await runBuilder(build('reason-root', dir, '--progress', 'plain', '--build-arg', `TOKEN=${secret}-3`));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toContain('cache miss');
  });
});

describe('bounded output', () => {
  it('a RUN printing 50 MB shows 2 MiB of it, says it was clipped, and finishes', async () => {
    const dir = await context('loud', `FROM ${fx.base}\nRUN yes 0123456789abcdef | head -c 50000000 && echo printed-$((40+2))\n`);
    const r = await runBuilder(build('loud-root', dir, '--progress', 'plain'));
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(r.stderr.match(/\[output clipped, log limit 2MiB reached\]/g)).toHaveLength(1);
    // 2 MiB of 17-byte lines, each with its `#2 1.234 ` prefix.
    expect(r.stderr.length).toBeLessThan(4 * 1024 * 1024);
    expect(r.stderr.length).toBeGreaterThan(2 * 1024 * 1024);
    expect(r.stderr).not.toContain('printed-42');
    expect(r.stderr).toMatch(/^#2 DONE /m);
  });

  it('BUILDKIT_STEP_LOG_MAX_SIZE sets the limit; -1 shows everything', async () => {
    const dir = await context('log-limit', `FROM ${fx.base}\nRUN seq 1 100000\n`);
    const small = await runBuilder(build('log-limit-root', dir, '--progress', 'plain', '--no-cache'), { env: { BUILDKIT_STEP_LOG_MAX_SIZE: '4096' } });
    expect(small.code, small.stderr).toBe(0);
    expect(small.stderr).toContain('[output clipped, log limit 4KiB reached]');
    expect(small.stderr).not.toMatch(/^#2 \d+\.\d{3} 100000$/m);
    const all = await runBuilder(build('log-limit-root', dir, '--progress', 'plain', '--no-cache'), { env: { BUILDKIT_STEP_LOG_MAX_SIZE: '-1' } });
    expect(all.code, all.stderr).toBe(0);
    expect(all.stderr).not.toContain('[output clipped');
    expect(all.stderr).toMatch(/^#2 \d+\.\d{3} 100000$/m);
    const bad = await runBuilder(build('log-limit-root', dir), { env: { BUILDKIT_STEP_LOG_MAX_SIZE: '2M' } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('invalid BUILDKIT_STEP_LOG_MAX_SIZE "2M"');
  });

  it('a failing RUN that printed 50 MB shows the last lines it printed, each line bounded', async () => {
    const dir = await context(
      'loud-fail',
      `FROM ${fx.base}\nRUN yes 0123456789abcdef | head -c 50000000; head -c 1000000 /dev/zero | tr '\\0' y; echo; echo last words; exit 4\n`,
    );
    const r = await runBuilder(build('loud-root', dir, '--progress', 'plain'));
    expect(r.code).toBe(1);
    const error = r.stderr.slice(r.stderr.indexOf('\n------\n'));
    expect(error).toContain(' > last words');
    expect(error).toContain('exit code: 4');
    expect(error.length).toBeLessThan(8 * 1024);
    expect(leftoverContainers(join(fx.work, 'loud-root'))).toEqual([]);
    expect(mountsUnder(join(fx.work, 'loud-root'))).toEqual([]);
  });

  it('a failing 200 kB RUN: the error shows the command once, clipped, and stays short', async () => {
    // Over four lines: BuildKit reads no line longer than 64 KiB.
    const long = Array.from({ length: 4 }, () => 'x'.repeat(50_000)).join('\\\n');
    const dir = await context('long-fail', `FROM ${fx.base}\nRUN echo START; : ${long}; echo THE-END; exit 7\n`);
    const r = await runBuilder(build('long-root', dir, '--progress', 'plain'));
    expect(r.code).toBe(1);
    expect(r.stderr.length).toBeLessThan(8 * 1024);
    expect(r.stderr).not.toContain(long);
    expect(r.stderr).not.toContain('THE-END');
    // After the step's own lines, the error names the file and line and quotes the command once.
    const error = r.stderr.slice(r.stderr.lastIndexOf('\nERROR: ') + 1);
    expect(error).toMatch(/^ERROR: Dockerfile:2: /);
    expect(error.split('echo START')).toHaveLength(2);
    expect(error).toMatch(/\[\.\.\. \d+ more characters\]/);
  });
});

describe('--progress json to a slow reader', () => {
  it('every event arrives, each line whole JSON, up to the last one', async () => {
    const lines = 250_000; // 1.7 MB: under the log limit
    const dir = await context('json-pipe', `FROM ${fx.base}\nRUN seq 1 ${lines}\nRUN echo second\n`);
    const file = join(fx.work, 'json-pipe.out');
    // Reads a chunk, then waits: the pipe fills and builder's writes queue up behind it.
    const reader = spawn(
      process.execPath,
      ['-e', `const fs=require('fs');const out=fs.openSync(process.argv[1],'w');process.stdin.on('data',(c)=>{fs.writeSync(out,c);process.stdin.pause();setTimeout(()=>process.stdin.resume(),50)});`, file],
      { stdio: ['pipe', 'ignore', 'inherit'] },
    );
    const builder = spawn(BUILDER_BIN, build('json-root', dir, '--progress', 'json'), { stdio: ['ignore', 'ignore', reader.stdin!] });
    const code = await new Promise<number | null>((resolve) => builder.on('close', resolve));
    reader.stdin!.end();
    await new Promise((resolve) => reader.on('close', resolve));
    const text = await readFile(file, 'utf8');
    expect(code, text.slice(-2000)).toBe(0);

    expect(text.endsWith('\n')).toBe(true);
    const all = text.trimEnd().split('\n').map((l) => JSON.parse(l) as ProgressEvent);
    const steps = all.filter((e): e is StepEvent => e.type === 'step');
    expect(steps.filter((e) => e.status === 'started').map((e) => e.name)).toEqual([
      expect.stringMatching(/^\[1\/3\] FROM /),
      `[2/3] RUN seq 1 ${lines}`,
      '[3/3] RUN echo second',
      'exporting to image',
    ]);
    expect(steps.filter((e) => e.status === 'done')).toHaveLength(4);
    expect(steps.at(-1)).toMatchObject({ id: 'export', status: 'done' });
    const seq = steps.find((e) => e.name.includes('RUN seq'))!.id;
    const printed = all.filter((e): e is LogEvent => e.type === 'log' && e.id === seq).map((e) => e.data).join('');
    expect(printed).toBe(Array.from({ length: lines }, (_, i) => `${i + 1}\n`).join(''));
  });
});

describe('plain output, line by line', () => {
  it('numbers the steps; a step keeps its stdout and stderr lines apart, and ends an unfinished line when it ends', async () => {
    // Both streams write half a line, then finish it later: they must not share a line.
    const run = `printf 'out-a '; printf 'err-a ' >&2; sleep 0.2; printf 'out-b\\n'; printf 'err-b\\n' >&2; printf out-tail`;
    const dir = await context('plain-lines', `FROM ${fx.base}\nRUN ${run}\nCOPY Dockerfile /copied\n`);
    const r = await runBuilder(build('plain-lines-root', dir, '--progress', 'plain'));
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trimEnd().split('\n').map((l) => l.replace(/^(#\d+) \d+\.\d{3} /, '$1 <t> ').replace(/ DONE \d+\.\ds$/, ' DONE <t>'));
    // The two streams reach builder through two pipes: their lines may come in either order.
    const logs = lines.filter((l) => l.startsWith('#2 <t> '));
    expect(logs.slice(0, 2).sort()).toEqual(['#2 <t> err-a err-b', '#2 <t> out-a out-b']);
    expect(lines).toEqual([
      expect.stringMatching(/^#1 \[1\/3\] FROM 127\.0\.0\.1:\d+\/library\/busybox:latest@sha256:[0-9a-f]{64}$/),
      '#1 cache miss: no cache for this step yet',
      '#1 DONE <t>',
      '',
      `#2 [2/3] RUN ${run}`,
      '#2 cache miss: no cache for this step yet',
      ...logs.slice(0, 2),
      '#2 <t> out-tail',
      '#2 DONE <t>',
      '',
      '#3 [3/3] COPY Dockerfile /copied',
      '#3 cache miss: no cache for this step yet',
      '#3 DONE <t>',
      '',
      '#4 exporting to image',
      '#4 DONE <t>',
    ]);
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
  });
});

describe('--progress rawjson', () => {
  it("prints BuildKit's SolveStatus per line: vertexes with start, completion and cached, logs by stream in base64", async () => {
    const dir = await context('rawjson', `FROM ${fx.base}\nRUN echo to-stdout; echo to-stderr >&2\n`);
    const statuses = (stderr: string) => stderr.trimEnd().split('\n').map((l) => JSON.parse(l) as SolveStatus);
    const first = await runBuilder(build('rawjson-root', dir, '--progress', 'rawjson'));
    expect(first.code, first.stderr).toBe(0);
    const all = statuses(first.stderr);
    const vertexes = all.flatMap((s) => s.vertexes ?? []);
    const run = vertexes.filter((v) => v.name === '[2/2] RUN echo to-stdout; echo to-stderr >&2');
    expect(run).toEqual([
      { digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/), name: run[0]!.name, started: expect.any(String) },
      { digest: run[0]!.digest, name: run[0]!.name, started: run[0]!.started, completed: expect.any(String) },
    ]);
    expect(Date.parse(run[1]!.completed!)).toBeGreaterThanOrEqual(Date.parse(run[1]!.started!));
    const logs = all.flatMap((s) => s.logs ?? []).filter((l) => l.vertex === run[0]!.digest);
    const text = (stream: number) => logs.filter((l) => l.stream === stream).map((l) => Buffer.from(l.data, 'base64').toString()).join('');
    expect([text(1), text(2)]).toEqual(['to-stdout\n', 'to-stderr\n']);
    // Steps outside the Dockerfile get a digest too.
    expect(vertexes.find((v) => v.name === 'exporting to image')?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    const again = await runBuilder(build('rawjson-root', dir, '--progress', 'rawjson'));
    expect(again.code, again.stderr).toBe(0);
    const cached = statuses(again.stderr).flatMap((s) => s.vertexes ?? []).filter((v) => v.name.startsWith('['));
    expect(cached.map((v) => [v.name.slice(0, 5), v.cached, typeof v.completed])).toEqual([
      ['[1/2]', true, 'string'],
      ['[2/2]', true, 'string'],
    ]);
  });
});

/** moby/buildkit client.SolveStatus, as JSON. */
interface SolveStatus {
  vertexes?: Array<{ digest: string; name: string; started?: string; completed?: string; cached?: boolean; error?: string }>;
  statuses?: Array<{ id: string; vertex?: string; current: number; total?: number }>;
  logs?: Array<{ vertex: string; stream: number; data: string; timestamp: string }>;
}

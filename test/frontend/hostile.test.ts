// Hostile Dockerfiles: inputs that used to hang, overflow the stack, take time or memory out of
// proportion to their size. Each must compile, or fail with a DockerfileError naming the file and
// line, quickly enough not to reach the test timeout.

import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import { DockerfileError } from '../../src/frontend/index.js';
import { formatPlan, plan } from '../../src/client/plan.js';
import { runBuilder } from '../helpers/cli.js';
import { build as compileText, rejection } from './helpers.js';

let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'builder-hostile-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A context directory holding `Dockerfile` with `text`. */
async function context(text: string): Promise<string> {
  const ctx = join(dir, `ctx-${n++}`);
  await mkdir(ctx);
  await writeFile(join(ctx, 'Dockerfile'), text);
  return ctx;
}

const planOf = async (text: string) => plan({ context: await context(text), root: join(dir, 'no-state') });

async function dockerfileError(p: Promise<unknown>): Promise<DockerfileError> {
  const err = await rejection(p);
  expect(err).toBeInstanceOf(DockerfileError);
  return err as DockerfileError;
}

describe('special files', () => {
  it('a FIFO named Dockerfile fails at once, without waiting for a writer, in plan(), build() and the CLI', async () => {
    const ctx = join(dir, 'fifo');
    await mkdir(ctx);
    execFileSync('mkfifo', [join(ctx, 'Dockerfile')]);
    await expect(plan({ context: ctx, root: join(dir, 'no-state') })).rejects.toThrow(
      /^failed to read Dockerfile Dockerfile: not a regular file: it is a FIFO \(named pipe\)$/,
    );
    await expect(build({ context: ctx, root: join(dir, 'state') })).rejects.toThrow(/not a regular file: it is a FIFO/);
    const r = await runBuilder(['build', '--dry-run', '--root', join(dir, 'no-state'), '-f', join(ctx, 'Dockerfile'), ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`failed to read Dockerfile ${join(ctx, 'Dockerfile')}: not a regular file: it is a FIFO`);
  });

  it('a FIFO .dockerignore fails at once and is named', async () => {
    const ctx = await context('FROM scratch\nCOPY . /\n');
    execFileSync('mkfifo', [join(ctx, '.dockerignore')]);
    await expect(plan({ context: ctx, root: join(dir, 'no-state') })).rejects.toThrow(
      `failed to read ${join(ctx, '.dockerignore')}: not a regular file: it is a FIFO (named pipe)`,
    );
  });

  it('a directory or a device is not read as a Dockerfile', async () => {
    const ctx = join(dir, 'dirdf');
    await mkdir(join(ctx, 'Dockerfile'), { recursive: true });
    await expect(plan({ context: ctx, root: join(dir, 'no-state') })).rejects.toThrow(/not a regular file: it is a directory/);
    await expect(plan({ context: ctx, dockerfile: '/dev/zero', root: join(dir, 'no-state') })).rejects.toThrow(
      'failed to read Dockerfile /dev/zero: not a regular file: it is a character device',
    );
  });

  it('a Dockerfile over 16 MiB is refused before it is read', async () => {
    const ctx = join(dir, 'big');
    await mkdir(ctx);
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\n');
    await truncate(join(ctx, 'Dockerfile'), 16 * 1024 * 1024 + 1); // sparse: nothing to write
    await expect(plan({ context: ctx, root: join(dir, 'no-state') })).rejects.toThrow(
      'failed to read Dockerfile Dockerfile: the file is larger than 16 MiB',
    );
  });
});

describe('long files', () => {
  it('20,000 RUN lines plan (no recursion per step)', async () => {
    const text = `FROM scratch\n${Array.from({ length: 20_000 }, (_, i) => `RUN echo ${i}`).join('\n')}\n`;
    const p = await planOf(text);
    expect(p.stages[0]?.steps).toHaveLength(20_000);
    expect(p.stages[0]?.steps.at(-1)).toMatchObject({ line: 20_001, name: '[20000/20000] RUN echo 19999' });
    expect(formatPlan(p).split('\n')).toHaveLength(20_003);
  });

  it('6,000 stages, each FROM the one before, plan', async () => {
    const stages = Array.from({ length: 6_000 }, (_, i) => `FROM s${i} AS s${i + 1}\nRUN echo ${i}`);
    const p = await planOf(`FROM scratch AS s0\n${stages.join('\n')}\n`);
    expect(p.stages).toHaveLength(6_001);
    expect(p.compiled.image.history).toHaveLength(6_000);
  });

  // Quadratic before (a copy of all labels per LABEL: 10,000 lines took 37 s), this size ran
  // into the test timeout; linear, it takes a second or two.
  it('30,000 LABEL lines all reach the image config', async () => {
    const text = `FROM scratch\n${Array.from({ length: 30_000 }, (_, i) => `LABEL l${i}=v${i}`).join('\n')}\n`;
    const labels = (await planOf(text)).compiled.image.config.Labels ?? {};
    expect(Object.keys(labels)).toHaveLength(30_000);
    expect(labels.l29999).toBe('v29999');
  });

  it('10,000 ENV lines keep their order and the last value of each key', async () => {
    const lines = Array.from({ length: 10_000 }, (_, i) => `ENV e${i % 5000}=${i}`);
    const env = (await planOf(`FROM scratch\n${lines.join('\n')}\n`)).compiled.image.config.Env ?? [];
    expect(env).toHaveLength(5001); // PATH + 5,000 keys
    expect(env[1]).toBe('e0=5000');
    expect(env.at(-1)).toBe('e4999=9999');
  });
});

describe('bombs', () => {
  it('a 1 MB line is refused as longer than BuildKit reads, reported briefly', async () => {
    const err = await dockerfileError(planOf(`FROM scratch\n${'x'.repeat(1_000_000)}\n`));
    expect(err.line).toBe(2);
    expect(err.message).toMatch(/^Dockerfile:2: dockerfile line greater than max allowed size of 65535 \(this line has 1000000 bytes;/);
    // The quoted source line is clipped.
    expect(err.format().length).toBeLessThan(2500);
  });

  it('a 1 MB garbage instruction over 20 lines is an unknown instruction, reported briefly', async () => {
    const garbage = Array.from({ length: 20 }, () => 'x'.repeat(50_000)).join('\\\n');
    const err = await dockerfileError(planOf(`FROM scratch\n${garbage}\n`));
    expect(err.line).toBe(2);
    expect(err.message).toBe(`Dockerfile:2: unknown instruction "${'X'.repeat(80)} [... 999920 more characters]"`);
    // The quoted source lines are clipped too: at most 10 of them, 1024 characters each.
    expect(err.format().length).toBeLessThan(12_000);
  });

  it('ARG doubling 31 times stops at the expansion limit, naming the line', async () => {
    const args = Array.from({ length: 31 }, (_, i) => `ARG A${i + 1}=$A${i}$A${i}`);
    const err = await dockerfileError(planOf(`FROM scratch\nARG A0=xx\n${args.join('\n')}\nRUN echo $A31\n`));
    // By ARG Ak the substitutions add up to 2^(k+2) - 4 characters: A22 (line 24) passes 8 MiB.
    expect(err.message).toMatch(/^Dockerfile:24: ARG: failed to process "\$A21\$A21": variable expansion exceeds the limit of 8 MiB/);
  });

  it('doubling ARGs before the first FROM stop the same way', async () => {
    const args = Array.from({ length: 31 }, (_, i) => `ARG A${i + 1}=$A${i}$A${i}`);
    const err = await dockerfileError(planOf(`ARG A0=xx\n${args.join('\n')}\nFROM scratch\n`));
    expect(err.message).toMatch(/^Dockerfile:23: ARG: .*exceeds the limit of 8 MiB/);
  });

  it('a replacement that multiplies a value is charged for every copy', async () => {
    const err = await dockerfileError(
      compileText(`FROM scratch\nARG A=${'x'.repeat(5000)}\nARG B=${'y'.repeat(5000)}\nENV C=\${A//?/$B}\n`),
    );
    expect(err.message).toMatch(/^Dockerfile:4: ENV: .*exceeds the limit of 8 MiB/);
  });

  it('a pattern that would backtrack for ever is refused; a simple one still works', async () => {
    const err = await dockerfileError(compileText(`FROM scratch\nARG A=${'a'.repeat(20_000)}\nENV B=\${A//*a*a*b/x}\n`));
    expect(err.message).toMatch(/^Dockerfile:3: ENV: .*pattern \(\*a\*a\*b\) in substitution: too many wildcards to match against a value of 20000 characters/);
    const ok = await compileText(`FROM scratch\nARG V=1.2.3-beta\nENV MAJOR=\${V%%.*} PRE=\${V#*-} DOTS=\${V//./_}\n`);
    expect(ok.image.config.Env).toContain('MAJOR=1');
    expect(ok.image.config.Env).toContain('PRE=beta');
    expect(ok.image.config.Env).toContain('DOTS=1_2_3-beta');
  });

  it('deeply nested substitutions are an error, not a stack overflow', async () => {
    const word = `${'${A:-'.repeat(10_000)}x${'}'.repeat(10_000)}`;
    const err = await dockerfileError(compileText(`FROM scratch\nENV B=${word}\n`));
    expect(err.message).toMatch(/^Dockerfile:2: ENV: failed to process ".*": variable substitutions nested more than 100 deep$/);
    const ok = await compileText('FROM scratch\nENV B=${A:-${C:-${D:-deep}}}\n');
    expect(ok.image.config.Env).toContain('B=deep');
  });

  it('a large value carried by thousands of RUN steps stops at the size limit', async () => {
    const runs = Array.from({ length: 5000 }, (_, i) => `RUN echo ${i}`).join('\n');
    const err = await dockerfileError(planOf(`FROM scratch\nENV BIG=${'b'.repeat(20_000)}\n${runs}\n`));
    expect(err.message).toMatch(/^Dockerfile:\d+: RUN: the build's steps would hold more than 16 MiB of commands, paths and environment/);
    expect(err.line).toBeGreaterThan(500);
  });

  it('ONBUILD repeated 100,000 times in one instruction is refused as chained ONBUILD', async () => {
    const onbuilds = Array.from({ length: 20 }, () => 'ONBUILD '.repeat(5_000)).join('\\\n');
    const err = await dockerfileError(planOf(`FROM scratch\n${onbuilds}RUN x\n`));
    expect(err.message).toBe("Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  });

  it('a parser directive padded with 65,000 blanks is read in linear time', async () => {
    const p = await planOf(`# check=skip=all${' '.repeat(65_000)}\nFROM alpine\n`);
    expect(p.compiled.warnings.filter((w) => w.rule)).toEqual([]);
  });

  it('the CopyAllBeforeInstall lint reads a RUN of 250,000 "mvn " words in linear time', async () => {
    const words = Array.from({ length: 20 }, () => 'mvn '.repeat(12_500)).join('\\\n');
    const r = await compileText(`FROM scratch\nCOPY . .\nRUN ${words}\nRUN mvn -q dependency:go-offline\n`);
    expect(r.warnings.filter((w) => w.rule === 'CopyAllBeforeInstall').map((w) => w.line)).toEqual([2]);
  });

  it('a malformed ADD URL is an error naming the line', async () => {
    const err = await dockerfileError(compileText('FROM scratch\nADD https://[::1/x /x\n'));
    expect(err.message).toBe('Dockerfile:2: ADD https://[::1/x: not a valid URL');
    const escape = await dockerfileError(compileText('FROM scratch\nADD https://127.0.0.1/%zz /x\n'));
    expect(escape.message).toBe('Dockerfile:2: ADD https://127.0.0.1/%zz: not a valid URL');
  });

  it('a heredoc marker with an unbalanced quote is an error naming the line (found by fuzzing)', async () => {
    const err = await dockerfileError(compileText('FROM scratch\nCOPY <<app.py" /srv/\nx\napp.py\n'));
    expect(err.message).toBe('Dockerfile:2: COPY: failed to process "app.py\\"": unexpected end of statement while looking for matching double-quote');
    const trigger = await dockerfileError(compileText('FROM scratch\nONBUILD COPY <<a" /x\n'));
    expect(trigger.message).toMatch(/^Dockerfile:2: COPY: failed to process "a\\"": unexpected end of statement/);
  });

  it('a label named __proto__ is kept like any other', async () => {
    const r = await compileText('FROM scratch\nLABEL __proto__=x a=b\n');
    expect(Object.entries(r.image.config.Labels ?? {})).toEqual([
      ['__proto__', 'x'],
      ['a', 'b'],
    ]);
  });
});

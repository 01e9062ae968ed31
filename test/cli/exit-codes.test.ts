// Each kind of failure has its own exit code (README "Exit codes"), and an error is printed as a
// message a person can act on: its stack trace only with --debug.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBuilder } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('exit-codes');

async function context(name: string, dockerfile: string): Promise<string> {
  const dir = join(fx.work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

const build = (dir: string, ...extra: string[]) => runBuilder(['build', '--network', 'none', '--root', join(fx.work, 'root'), ...extra, dir]);
/** A line of a JavaScript stack trace. */
const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m;

describe('exit codes', () => {
  it('1: a step failed; its stack trace only with --debug', async () => {
    const dir = await context('failing', `FROM ${fx.base}\nRUN echo about to fail; exit 5\n`);
    const r = await build(dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(' > about to fail');
    expect(r.stderr).toMatch(/^ERROR: Dockerfile:2: .*exit code: 5/m);
    expect(r.stderr).not.toMatch(STACK_LINE);

    for (const args of [['--debug', 'build'], ['build', '--debug']]) {
      const debug = await runBuilder([...args, '--network', 'none', '--root', join(fx.work, 'root'), dir]);
      expect(debug.code, args.join(' ')).toBe(1);
      expect(debug.stderr).toMatch(STACK_LINE);
    }
  });

  it('2: bad usage, or a Dockerfile that does not parse; nothing runs', async () => {
    const dir = await context('usage', `FROM ${fx.base}\nRUN echo fine\n`);
    const cases: Array<[string[], string]> = [
      [['bild', dir], 'unknown command "bild"'],
      [['build', '--no-such-flag', dir], "Unknown option '--no-such-flag'"],
      [['build', '--progress', 'fancy', dir], 'invalid --progress "fancy": use auto, tty, plain, rawjson, json, quiet'],
      [['build', '--platform', 'linux/amd64,linux/arm64', dir], 'invalid platform "linux/amd64,linux/arm64"'],
      [['build', dir, dir], '"builder build" requires exactly 1 argument'],
      [['prune', '--filter', 'type=regular', '-f'], 'invalid --filter "type=regular"'],
    ];
    for (const [args, message] of cases) {
      const r = await runBuilder([...args, '--root', join(fx.work, 'usage-root')]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).not.toMatch(STACK_LINE);
    }
    const broken = await context('broken', `FROM ${fx.base}\nFROBNICATE the build\n`);
    const r = await build(broken);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ERROR: Dockerfile:2: unknown instruction "FROBNICATE"/m);
    expect(r.stderr).not.toMatch(STACK_LINE);
  });

  it('3: a registry error, whether a FROM, a COPY --from or a pull meets it', async () => {
    const missing = `${fx.registry.host}/library/no-such-image:1`;
    const from = await build(await context('no-image', `FROM ${missing}\n`));
    expect(from.code).toBe(3);
    expect(from.stderr).toContain(`not found: ${missing}`);

    const pull = await runBuilder(['pull', '--root', join(fx.work, 'root'), missing]);
    expect(pull.code).toBe(3);
    expect(pull.stderr).toContain(`not found: ${missing}`);

    // COPY --from an image: the registry's answer reaches the step, and the code says so.
    const copy = await build(await context('copy-from', `FROM ${fx.base}\nCOPY --from=${missing} /x /x\n`));
    expect(copy.code).toBe(3);
    expect(copy.stderr).not.toMatch(STACK_LINE);
  });
});

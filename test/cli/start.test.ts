// bin/builder runs the bundled CLI from V8's code cache (scripts/cli-start.cjs). The command must
// work from anywhere, and a cache must never stand in for a script it was not made from: V8
// checks only the script's length, so an edited script of the same length would run the old code.

import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { BUILDER_BIN } from '../helpers/cli.js';

const BUNDLE = fileURLToPath(new URL('../../dist/cli-bundle', import.meta.url));
const USAGE = 'Usage: builder [--debug] build';

let work: string | undefined;
afterEach(() => {
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** A copy of the bundle (script, source map, code cache, starter) in a directory of its own. */
function copyOfBundle(): string {
  work = mkdtempSync(join(tmpdir(), 'builder-start-'));
  const dir = join(work, 'cli-bundle');
  cpSync(BUNDLE, dir, { recursive: true, preserveTimestamps: true });
  return dir;
}

const help = (start: string) => spawnSync(process.execPath, [start, '--help'], { encoding: 'utf8' });

describe('bin/builder start-up', () => {
  it('runs through a symlink, from another directory', () => {
    work = mkdtempSync(join(tmpdir(), 'builder-start-'));
    const link = join(work, 'builder');
    symlinkSync(BUILDER_BIN, link);
    const r = spawnSync(link, ['--help'], { cwd: work, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.startsWith(USAGE)).toBe(true);
  });

  it('runs from a symlinked directory, and as `sh bin/builder` from the package', () => {
    work = mkdtempSync(join(tmpdir(), 'builder-start-'));
    // As a workspace or `npm link` leaves it: the package's directory itself is a symlink.
    const linkedBin = join(work, 'bin');
    symlinkSync(dirname(BUILDER_BIN), linkedBin);
    const viaDir = spawnSync(join(linkedBin, 'builder'), ['--help'], { cwd: work, encoding: 'utf8' });
    expect(viaDir.stderr).toBe('');
    expect(viaDir.stdout.startsWith(USAGE)).toBe(true);
    const viaSh = spawnSync('sh', ['bin/builder', '--help'], { cwd: dirname(dirname(BUILDER_BIN)), encoding: 'utf8', env: { ...process.env, CDPATH: '/' } });
    expect(viaSh.stderr).toBe('');
    expect(viaSh.stdout.startsWith(USAGE)).toBe(true);
  });

  it('comes with a code cache made by npm run build', () => {
    expect(readFileSync(join(BUNDLE, 'builder.cjs.cache')).length).toBeGreaterThan(0);
  });

  it('runs a script edited after its code cache was made, not the cached code', () => {
    const dir = copyOfBundle();
    const script = join(dir, 'builder.cjs');
    // Same length, so that V8 itself would take the cache for this script.
    writeFileSync(script, readFileSync(script, 'utf8').replace(USAGE, USAGE.replace('builder', 'BUILDER')));
    const later = new Date(Date.now() + 60_000);
    utimesSync(script, later, later);
    const r = help(join(dir, 'start.cjs'));
    expect(r.status).toBe(0);
    expect(r.stdout.startsWith('Usage: BUILDER [--debug] build')).toBe(true);
  });

  it('reads the bundle as the source means it: µs and μs (escaped in the bundle) are microseconds', () => {
    work = mkdtempSync(join(tmpdir(), 'builder-start-'));
    writeFileSync(join(work, 'Dockerfile'), 'FROM scratch\nHEALTHCHECK --interval=1500µs --timeout=2000μs CMD ["true"]\n');
    const root = join(work, 'root');
    const built = spawnSync(BUILDER_BIN, ['build', '--root', root, '-q', '-t', 'health:1', work], { encoding: 'utf8' });
    expect(built.stderr).toBe('');
    expect(built.status).toBe(0);
    const inspected = spawnSync(BUILDER_BIN, ['inspect', '--root', root, 'health:1'], { encoding: 'utf8' });
    expect(inspected.status).toBe(0);
    const [image] = JSON.parse(inspected.stdout) as Array<{ Config: { Healthcheck: { Interval: number; Timeout: number } } }>;
    expect(image!.Config.Healthcheck).toMatchObject({ Interval: 1_500_000, Timeout: 2_000_000 });
  });

  it('with --debug, prints stack traces through the source map, into the TypeScript sources', () => {
    work = mkdtempSync(join(tmpdir(), 'builder-start-'));
    writeFileSync(join(work, 'Dockerfile'), 'FROM scratch\nCOPY missing.txt /\n');
    const r = spawnSync(BUILDER_BIN, ['--debug', 'build', '--root', join(work, 'root'), work], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^\s+at .*\/src\/solver\/solver\.ts:\d+:\d+\)?$/m);
    expect(r.stderr).not.toContain('builder.cjs:');
  });

  it('works with a damaged code cache', () => {
    const dir = copyOfBundle();
    truncateSync(join(dir, 'builder.cjs.cache'), 1000);
    const r = help(join(dir, 'start.cjs'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.startsWith(USAGE)).toBe(true);
  });
});

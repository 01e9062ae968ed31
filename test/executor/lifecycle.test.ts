// Cleanup of RUN steps through the CLI, as a user (or a CI job runner) stops a build:
// SIGTERM cleans up before exiting; SIGKILL cannot, and the next build sweeps what was left
// (the container, its mounts, the active snapshot, the bundle).

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { finished, leftoverContainers, mountsUnder, runBuilder, startBuilder, waitForStderr } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('lifecycle');

async function context(name: string, dockerfile: string): Promise<string> {
  const dir = join(fx.work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

/** Snapshots that are not committed (active or view), from the snapshotter's metadata. */
function uncommittedSnapshots(root: string): string[] {
  const dir = join(root, 'metadata');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.json'))
    .map((n) => JSON.parse(readFileSync(join(dir, n), 'utf8')) as { key: string; kind: string })
    .filter((m) => m.kind !== 'committed')
    .map((m) => m.key);
}

function bundles(root: string): string[] {
  return existsSync(join(root, 'bundles')) ? readdirSync(join(root, 'bundles')) : [];
}

async function startedRun(root: string, dir: string): Promise<ReturnType<typeof startBuilder>> {
  const child = startBuilder(['build', '--network', 'none', '--root', root, '--progress', 'plain', dir]);
  await waitForStderr(child, 'ready-42');
  expect(child.output.stderr).toContain('ready-42');
  return child;
}

describe('stopping a build during a RUN', () => {
  it('SIGTERM: stops the container, unmounts, removes the step snapshot and bundle, then exits', async () => {
    const root = join(fx.work, 'term-root');
    // Longer than the test's timeout: a build that does not stop the container fails it.
    const dir = await context('term', `FROM ${fx.base}\nRUN echo ready-$((40+2)) && sleep 600\n`);
    const child = await startedRun(root, dir);
    expect(leftoverContainers(root).length).toBe(1);
    child.kill('SIGTERM');
    const r = await finished(child);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/terminated: stopping the build and cleaning up/);
    expect(leftoverContainers(root)).toEqual([]);
    expect(mountsUnder(root)).toEqual([]);
    expect(uncommittedSnapshots(root)).toEqual([]);
    expect(bundles(root)).toEqual([]);
  }, 90_000);

  it('SIGKILL: leaves the container running; the next build sweeps everything', async () => {
    const root = join(fx.work, 'kill-root');
    const dir = await context('kill', `FROM ${fx.base}\nRUN echo ready-$((40+2)) && sleep 60\n`);
    const child = await startedRun(root, dir);
    child.kill('SIGKILL');
    await finished(child);
    // What a crash leaves behind.
    expect(leftoverContainers(root).length).toBe(1);
    expect(mountsUnder(root).length).toBeGreaterThan(0);
    expect(uncommittedSnapshots(root).length).toBe(1);
    expect(bundles(root).length).toBe(1);

    // A build on another state directory leaves them alone: they are this one's to sweep.
    const elsewhere = await runBuilder(['build', '--network', 'none', '--root', join(fx.work, 'other-root'), '--progress', 'plain', await context('other', `FROM ${fx.base}\nRUN echo other\n`)]);
    expect(elsewhere.code, elsewhere.stderr).toBe(0);
    expect(leftoverContainers(root).length).toBe(1);
    expect(bundles(root).length).toBe(1);

    const next = await context('after-kill', `FROM ${fx.base}\nRUN echo fine\n`);
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'plain', next]);
    expect(r.code, r.stderr).toBe(0);
    expect(leftoverContainers(root)).toEqual([]);
    expect(mountsUnder(root)).toEqual([]);
    expect(uncommittedSnapshots(root)).toEqual([]);
    expect(bundles(root)).toEqual([]);
    // No snapshot dir is left without metadata.
    const metas = readdirSync(join(root, 'metadata')).filter((n) => n.endsWith('.json'));
    expect(readdirSync(join(root, 'snapshots')).length).toBe(metas.length);
  }, 90_000);
});

// `builder doctor`: the integrity check of a state directory, as a user runs it. It must find
// damaged and missing content through every record that names it, tell leftovers of a killed
// build apart from damage, and find nothing once the next build has swept them.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { doctor } from '../../src/client/doctor.js';
import { finished, leftoverContainers, mountsUnder, runBuilder, startBuilder, waitForStderr } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('doctor');
let ctx: string;
/** A state directory holding one built image, copied by tests that damage it. */
let built: string;

beforeAll(async () => {
  ctx = join(fx.work, 'ctx');
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nRUN echo built > /built\nCOPY a.txt /a.txt\n`);
  await writeFile(join(ctx, 'a.txt'), 'a\n');
  built = join(fx.work, 'built');
  const r = await runBuilder(['build', '--network', 'none', '--root', built, '-t', 'local/app:1', ctx]);
  expect(r.code, r.stderr).toBe(0);
});

function copyOf(name: string): string {
  const root = join(fx.work, name);
  // cp -a: snapshots hold symlinks, device files (whiteouts) and owners to keep as they are.
  execFileSync('cp', ['-a', built, root]);
  return root;
}

/** The image's manifest and config, read as skopeo would. */
function image(root: string): { manifest: string; config: string; layers: string[] } {
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  const manifest = index.manifests.find((d) => d.annotations['org.opencontainers.image.ref.name'] === 'docker.io/local/app:1')!.digest;
  const m = JSON.parse(readFileSync(blob(root, manifest), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
  return { manifest, config: m.config.digest, layers: m.layers.map((l) => l.digest) };
}

const blob = (root: string, digest: string) => join(root, 'blobs', 'sha256', digest.slice('sha256:'.length));

describe('builder doctor', () => {
  it('finds nothing wrong after a build, and says what it checked', async () => {
    const r = await runBuilder(['doctor', '--root', built]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${built}: no problems \\(checked \\d+ blobs, 2 images, \\d+ cache records, \\d+ snapshots\\)\\n$`));
  });

  it('finds a flipped byte in a layer, through the blob and every record that names it', async () => {
    const root = copyOf('flipped');
    const layer = image(root).layers.at(-1)!;
    const bytes = readFileSync(blob(root, layer));
    bytes[bytes.length >> 1]! ^= 0x01;
    writeFileSync(blob(root, layer), bytes);

    const r = await runBuilder(['doctor', '--root', root]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`problem: ${blob(root, layer)}: corrupt blob: its bytes hash to sha256:`);
    expect(r.stdout).toContain(`problem: ${join(root, 'index.json')} (docker.io/local/app:1): layer ${layer} is missing or corrupt`);
    expect(r.stdout).toMatch(new RegExp(`problem: ${root}/cache/keys/[0-9a-f]{64}\\.json: cached layer ${layer} is missing or corrupt`));
    expect(r.stdout).toMatch(/: \d+ problems \(checked/);
  });

  it('finds a missing config and a cache record torn in half', async () => {
    const root = copyOf('missing');
    const { config } = image(root);
    rmSync(blob(root, config));
    const keys = join(root, 'cache', 'keys');
    const record = join(keys, readdirSync(keys)[0]!);
    writeFileSync(record, readFileSync(record, 'utf8').slice(0, 20));
    // A context's stat cache cut short after its header and counts.
    const statCache = join(root, 'cache', 'context', `${'0'.repeat(32)}.stat`);
    mkdirSync(dirname(statCache), { recursive: true });
    writeFileSync(statCache, Buffer.concat([Buffer.from('builder stat v3\n'), Buffer.from([1, 0, 0, 0, 8, 0, 0, 0])]));
    // A COPY step's copy record, the same.
    const copyRecord = join(root, 'cache', 'copies', `${'0'.repeat(64)}.copy`);
    mkdirSync(dirname(copyRecord), { recursive: true });
    writeFileSync(copyRecord, Buffer.concat([Buffer.from('builder copy v1\n'), Buffer.from([1, 0, 0, 0, 8, 0, 0, 0])]));

    const report = await doctor({ root });
    expect(report.issues).toEqual(
      expect.arrayContaining([
        { path: `${join(root, 'index.json')} (docker.io/local/app:1)`, message: `config ${config} is missing or corrupt (${blob(root, config)})`, leftover: false },
        expect.objectContaining({ path: record, message: expect.stringMatching(/^unreadable cache record: /), leftover: false }),
        { path: statCache, message: 'unreadable context stat cache: truncated stat cache', leftover: false },
        { path: copyRecord, message: 'unreadable copy record', leftover: false },
      ]),
    );
  });

  it('tells leftovers of a killed build from damage; the next build sweeps them all', async () => {
    const root = copyOf('killed');
    const dir = join(fx.work, 'kill-ctx');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), `FROM ${fx.base}\nRUN echo ready-$((40+2)) && sleep 60\n`);
    const child = startBuilder(['build', '--network', 'none', '--root', root, '--progress', 'plain', dir]);
    await waitForStderr(child, 'ready-42');
    child.kill('SIGKILL');
    await finished(child);
    // A write cut short between its temporary file and the rename.
    writeFileSync(join(root, 'index.json.0123456789ab.tmp'), '{"schemaVersion":2,');
    // The image index's lock, as a build killed while naming its image leaves it: a rebuild of the
    // same image never writes the index, so only the sweep can remove it.
    const gone = spawnSync('true').pid!;
    mkdirSync(join(root, 'index.lock'));
    writeFileSync(join(root, 'index.lock', `${gone}.1`), '');

    const r = await runBuilder(['doctor', '--root', root]);
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain('problem:');
    const container = leftoverContainers(root)[0];
    expect(container).toBeDefined();
    expect(r.stdout).toContain(`leftover: runc container ${container}: container of a process that is gone`);
    expect(r.stdout).toContain(`leftover: ${join(root, 'bundles', container!)}: container bundle of a process that is gone`);
    for (const point of mountsUnder(root)) expect(r.stdout).toContain(`leftover: ${point}: still mounted, by a process that is gone`);
    expect(r.stdout).toMatch(/leftover: .*\/metadata\/[0-9a-f]{64}\.json: active snapshot "active-[0-9a-f]+" of a process that is gone/);
    expect(r.stdout).toContain(`leftover: ${join(root, 'index.json.0123456789ab.tmp')}: temporary file of an interrupted write`);
    expect(r.stdout).toContain(`leftover: ${join(root, 'index.lock')}: image index lock of process ${gone}, which is gone`);
    expect(r.stdout).toMatch(/: \d+ leftovers of builds that did not finish \(the next build removes them\)/);

    const next = await runBuilder(['build', '--network', 'none', '--root', root, ctx]);
    expect(next.code, next.stderr).toBe(0);
    const after = await runBuilder(['doctor', '--root', root]);
    expect(after.code, after.stdout).toBe(0);
    expect(leftoverContainers(root)).toEqual([]);
    expect(mountsUnder(root)).toEqual([]);
  });

  it('refuses to check a state directory a running build holds', async () => {
    const root = copyOf('busy');
    const dir = join(fx.work, 'busy-ctx');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), `FROM ${fx.base}\nRUN echo ready-$((40+2)) && sleep 60\n`);
    const child = startBuilder(['build', '--network', 'none', '--root', root, '--progress', 'plain', dir]);
    try {
      await waitForStderr(child, 'ready-42');
      const r = await runBuilder(['doctor', '--root', root]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`ERROR: state directory ${root} is in use by process ${child.pid}: check it when no build or pull is running`);
    } finally {
      child.kill('SIGINT');
      await finished(child);
    }
  });
});

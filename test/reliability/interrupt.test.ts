// Stopping a build with Ctrl-C (SIGINT) or SIGTERM at the moments that used to slip through: while
// it pushes, and while its last COPY is written. The build must exit with the signal's code, name
// nothing (no local tag, no tag in the registry), and leave the state directory sound and clean.

import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events, finished, runBuilder, startBuilder, waitForStderr } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { leftBehind, localTags, registryTag } from '../helpers/integrity.js';

const fx = useBuildFixture('interrupt');
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(fx.work, 'tmp-'));
});

async function context(name: string, dockerfile: string, files: Record<string, Buffer | string> = {}): Promise<string> {
  const dir = join(fx.work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  for (const [file, data] of Object.entries(files)) await writeFile(join(dir, file), data);
  return dir;
}

describe('Ctrl-C during a push', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    // Every blob upload is held until released: the build is certainly pushing when interrupted.
    proxy = await startFaultProxy(fx.registry.host, (req) => (req.method === 'PUT' && req.path.includes('/blobs/uploads/') ? { stall: true } : undefined));
  });
  afterAll(async () => proxy?.close());

  it('exits 130, and neither the registry nor the local store gets the tag', async () => {
    const root = join(fx.work, 'push-root');
    const dir = await context('push', `FROM ${fx.base}\nRUN echo pushed > /pushed\n`);
    const tag = `${proxy.host}/interrupted/push:1`;
    const child = startBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', '--push', '-t', tag, dir], { env: { TMPDIR: tmp } });
    await proxy.stalled();
    child.kill('SIGINT');
    // Once the build has taken the signal, the upload it waits for goes through.
    await waitForStderr(child, 'interrupted: stopping the build and cleaning up');
    proxy.release();
    const r = await finished(child);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('interrupted: stopping the build and cleaning up');
    expect(r.stdout).not.toMatch(/^pushed /m);
    expect(await registryTag(fx.registry.host, 'interrupted/push', '1')).toBeUndefined();
    expect(localTags(root)).not.toContain(tag);
    expect(await leftBehind(root, tmp)).toEqual([]);

    // Nothing is half done: the same build then pushes a complete image.
    const again = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', '--push', '-t', tag, dir], { env: { TMPDIR: tmp } });
    expect(again.code, again.stderr).toBe(0);
    expect(await registryTag(fx.registry.host, 'interrupted/push', '1')).toMatchObject({ missingBlobs: [] });
    expect(localTags(root)).toContain(tag);
    expect(await leftBehind(root, tmp)).toEqual([]);
  });
});

describe('a signal at the end of a build', () => {
  // Large enough that copying, diffing and compressing it outlast the signal's delivery.
  const big = Buffer.alloc(96 << 20, 7);
  const dockerfile = () => `FROM ${fx.base}\nRUN echo first > /first\nCOPY big.bin /big.bin\n`;
  const started = (stderr: string, name: string) => events(stderr).some((e) => e.type === 'step' && e.status === 'started' && e.name.includes(name));

  it('SIGTERM during the last COPY: exits 143, the tag is not written, and nothing is left', async () => {
    const root = join(fx.work, 'copy-root');
    const dir = await context('copy', dockerfile(), { 'big.bin': big });
    const child = startBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', '-t', 'local/copy:1', dir], { env: { TMPDIR: tmp } });
    await waitForStderr(child, (stderr) => started(stderr, 'COPY big.bin'), 'the COPY start');
    child.kill('SIGTERM');
    const r = await finished(child);
    expect(r.code, r.stderr).toBe(143);
    expect(r.stdout).toBe('');
    expect(localTags(root)).not.toContain('docker.io/local/copy:1');
    expect(await leftBehind(root, tmp)).toEqual([]);
  });

  it('Ctrl-C once the last COPY is done, while the image is exported: exits 130 and the tag is not written', async () => {
    const root = join(fx.work, 'export-root');
    const dir = await context('export', dockerfile(), { 'big.bin': big });
    const archive = join(fx.work, 'export.tar');
    const child = startBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', '-t', 'local/export:1', '-o', `type=oci,dest=${archive}`, dir], {
      env: { TMPDIR: tmp },
    });
    await waitForStderr(child, (stderr) => started(stderr, 'exporting OCI archive'), 'the export start');
    child.kill('SIGINT');
    const r = await finished(child);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stdout).toBe('');
    expect(localTags(root)).not.toContain('docker.io/local/export:1');
    expect(await leftBehind(root, tmp)).toEqual([]);
  });
});

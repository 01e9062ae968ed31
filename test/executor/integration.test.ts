// A RUN step end to end: unpack a busybox layer, run a command on a writable snapshot, diff it.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import { RuncExecutor } from '../../src/executor/runc.js';
import { MediaType } from '../../src/oci/types.js';
import { applyLayer, createSnapshotter, withMounts, writeLayer, type LocalSnapshotter } from '../../src/snapshotter/index.js';
import { makeLayer, readLayer, stream, tempDir, type TestEntry } from '../snapshotter/helpers.js';

async function busyboxLayer(): Promise<Buffer> {
  const entries: TestEntry[] = [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/busybox', content: await readFile('/bin/busybox'), mode: 0o755 },
    { name: 'etc/', type: 'directory' },
    { name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
  ];
  for (const a of ['sh', 'echo', 'mkdir', 'cat', 'rm']) entries.push({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox' });
  return makeLayer(entries);
}

describe.each(['overlayfs', 'native'] as const)('RUN step on %s', (kind) => {
  let dir: { path: string; cleanup(): Promise<void> };
  let sn: LocalSnapshotter;
  let store: ContentStore;

  beforeEach(async () => {
    dir = await tempDir(`builder-run-${kind}-`);
    sn = await createSnapshotter(join(dir.path, 'root'), kind);
    store = new ContentStore(join(dir.path, 'content'));
    await store.init();
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it('runs a command in a snapshot and records only its changes', async () => {
    await sn.prepare('x');
    const layer = await busyboxLayer();
    await applyLayer(await sn.layout('x'), stream(layer), MediaType.OciLayerGzip);
    await sn.commit('base', 'x');

    const executor = new RuncExecutor({ bundleRoot: join(dir.path, 'bundles') });
    let out = '';
    await withMounts(await sn.prepare('run', 'base'), async (rootfs) => {
      const r = await executor.run({
        rootfs,
        args: ['sh', '-c', 'echo hi > /hello; mkdir -p data; rm /etc/passwd; echo done'],
        env: [],
        cwd: '/app',
        user: '',
        network: 'none',
        stdout: (c) => (out += c.toString()),
        stderr: (c) => (out += c.toString()),
      });
      expect(r.exitCode).toBe(0);
    });
    expect(out).toBe('done\n');
    const diff = await writeLayer(await sn.layout('run'), store, { sourceDateEpoch: 0 });
    const names = (await readLayer(store, diff.digest)).map((e) => e.name);
    // No /proc, /dev, /sys or /etc/hosts stubs: only the step's own changes.
    expect(names).toEqual(['app/', 'app/data/', 'etc/', 'etc/.wh.passwd', 'hello']);

    // A step that changes nothing gives an empty layer, although runc had to create (and we
    // removed) /etc/hosts & co. in the snapshot, which made overlayfs copy /etc up.
    await withMounts(await sn.prepare('noop', 'base'), async (rootfs) => {
      const r = await executor.run({ rootfs, args: ['sh', '-c', 'cat /etc/hosts >/dev/null'], env: [], cwd: '/', user: '', network: 'none', stdout: () => undefined, stderr: () => undefined });
      expect(r.exitCode).toBe(0);
    });
    expect((await writeLayer(await sn.layout('noop'), store)).empty).toBe(true);

    // Writes under mounts stay there: with targets missing from the image (stubs) or inside
    // an existing directory (/etc), the layer is empty.
    await writeFile(join(dir.path, 'conf'), 'x\n');
    await withMounts(await sn.prepare('mounts', 'base'), async (rootfs) => {
      const r = await executor.run({
        rootfs,
        args: ['sh', '-c', 'echo a > /data/cache/a && cat /etc/app.conf /run/secrets/s >/dev/null'],
        env: [],
        cwd: '/',
        user: '',
        network: 'none',
        mounts: [
          { type: 'tmpfs', target: '/data/cache' },
          { type: 'bind', target: '/etc/app.conf', source: join(dir.path, 'conf'), readonly: true },
          { type: 'secret', target: '/run/secrets/s', data: Buffer.from('s'), mode: 0o400, uid: 0, gid: 0 },
        ],
        stdout: () => undefined,
        stderr: () => undefined,
      });
      expect(r.exitCode).toBe(0);
    });
    expect((await writeLayer(await sn.layout('mounts'), store)).empty).toBe(true);
  });
});

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, existsSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { link, lstat, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  SnapshotExistsError,
  SnapshotNotFoundError,
  createSnapshotter,
  isMountPoint,
  mountAll,
  withMounts,
  type LocalSnapshotter,
} from '../../src/snapshotter/index.js';
import { mountCommand, sealedCopy, unmountAll } from '../../src/snapshotter/mount.js';
import { mountsUnder } from '../helpers/cli.js';
import { tempDir } from './helpers.js';

const kinds = ['overlayfs', 'native'] as const;

describe.each(kinds)('%s snapshotter', (kind) => {
  let dir: { path: string; cleanup(): Promise<void> };
  let sn: LocalSnapshotter;

  beforeEach(async () => {
    dir = await tempDir(`builder-sn-${kind}-`);
    sn = await createSnapshotter(join(dir.path, 'root'), kind);
    expect(sn.name).toBe(kind);
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it('prepares, commits and views a chain', async () => {
    const m1 = await sn.prepare('a');
    await withMounts(m1, async (d) => {
      await writeFile(join(d, 'base.txt'), 'one');
      await mkdir(join(d, 'd'));
      await writeFile(join(d, 'd', 'x'), 'x');
    });
    await sn.commit('L1', 'a');
    expect(await sn.stat('a')).toBeUndefined();
    expect(await sn.stat('L1')).toEqual({ key: 'L1', kind: 'committed', created: expect.any(String) });

    const m2 = await sn.prepare('b', 'L1');
    expect(await sn.stat('b')).toEqual({ key: 'b', kind: 'active', parent: 'L1', created: expect.any(String) });
    expect(await sn.mounts('b')).toEqual(m2);
    await withMounts(m2, async (d) => {
      expect(await readFile(join(d, 'base.txt'), 'utf8')).toBe('one');
      await writeFile(join(d, 'base.txt'), 'two');
      await writeFile(join(d, 'second.txt'), '2');
      await rm(join(d, 'd', 'x'));
    });
    await sn.commit('L2', 'b');

    await sn.view('v2', 'L2');
    await withMounts(await sn.mounts('v2'), async (d) => {
      expect(await readFile(join(d, 'base.txt'), 'utf8')).toBe('two');
      expect(await readFile(join(d, 'second.txt'), 'utf8')).toBe('2');
      expect(await readdir(join(d, 'd'))).toEqual([]);
      await expect(writeFile(join(d, 'nope'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    });
    await withMounts(await sn.view('v1', 'L1'), async (d) => {
      expect(await readFile(join(d, 'base.txt'), 'utf8')).toBe('one');
      expect(await readdir(join(d, 'd'))).toEqual(['x']);
    });

    if (kind === 'overlayfs') {
      // A committed overlay snapshot holds only its diff, whiteouts included.
      const l2 = (await sn.layout('L2')).dir;
      expect((await readdir(l2)).sort()).toEqual(['base.txt', 'd', 'second.txt']);
      const wh = await lstat(join(l2, 'd', 'x'));
      expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    }

    expect((await sn.list()).map((i) => i.key).sort()).toEqual(['L1', 'L2', 'v1', 'v2']);
    await expect(sn.remove('L1')).rejects.toThrow(/depends on it/);
    for (const k of ['v1', 'v2', 'L2', 'L1']) await sn.remove(k);
    expect(await sn.list()).toEqual([]);
    expect(await readdir(join(sn.root, 'snapshots'))).toEqual([]);
    expect(await readdir(join(sn.root, 'mounts'))).toEqual([]);
  });

  it('rejects duplicate keys, unknown parents and active parents', async () => {
    await sn.prepare('a');
    await expect(sn.prepare('a')).rejects.toBeInstanceOf(SnapshotExistsError);
    await expect(sn.prepare('b', 'missing')).rejects.toBeInstanceOf(SnapshotNotFoundError);
    await expect(sn.prepare('b', 'a')).rejects.toThrow(/not committed/);
    await sn.commit('C', 'a');
    await sn.prepare('a2', 'C');
    await expect(sn.commit('C', 'a2')).rejects.toBeInstanceOf(SnapshotExistsError);
    await expect(sn.mounts('C')).rejects.toThrow(/committed/);
    // Keys are arbitrary strings, ChainIDs included.
    const chain = `sha256:${'ab'.repeat(32)}`;
    await sn.commit(chain, 'a2');
    expect(await sn.stat(chain)).toEqual({ key: chain, kind: 'committed', parent: 'C', created: expect.any(String) });
  });

  it('views with no parent are empty and read-only', async () => {
    await withMounts(await sn.view('empty'), async (d) => {
      expect(await readdir(d)).toEqual([]);
      await expect(writeFile(join(d, 'x'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    });
  });

  it('unmounts even when the callback throws', async () => {
    const mounts = await sn.prepare('a');
    let seen = '';
    await expect(
      withMounts(mounts, async (d) => {
        seen = d;
        expect(await isMountPoint(d)).toBe(true);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await isMountPoint(seen)).toBe(false);
    expect(await readdir(join(sn.root, 'mounts'))).toEqual([]);
  });

  it('reports the disk usage of a snapshot\'s own data', async () => {
    await withMounts(await sn.prepare('u1'), async (d) => {
      await writeFile(join(d, 'a'), Buffer.alloc(64 * 1024, 1));
      await mkdir(join(d, 'dir'));
    });
    await sn.commit('U1', 'u1');
    const base = await sn.usage('U1');
    expect(base.inodes).toBe(3); // root, a, dir
    expect(base.size).toBeGreaterThanOrEqual(64 * 1024);
    await withMounts(await sn.prepare('u2', 'U1'), async (d) => {
      await writeFile(join(d, 'b'), Buffer.alloc(128 * 1024, 2));
      await link(join(d, 'b'), join(d, 'b2'));
    });
    const top = await sn.usage('u2');
    if (kind === 'overlayfs') {
      // Only the diff: root, b (its two names count once).
      expect(top.inodes).toBe(2);
      expect(top.size).toBeGreaterThanOrEqual(128 * 1024);
      expect(top.size).toBeLessThan(128 * 1024 + 64 * 1024);
    } else {
      expect(top.inodes).toBe(4);
      expect(top.size).toBeGreaterThanOrEqual(192 * 1024);
    }
    await expect(sn.usage('nope')).rejects.toThrow(/does not exist/);
  });

  it('defers the unmount of a writable snapshot until commit or remove', async () => {
    await withMounts(await sn.prepare('base-d'), async (d) => writeFile(join(d, 'f'), 'base'));
    await sn.commit('B', 'base-d');
    for (const end of ['commit', 'remove'] as const) {
      const key = `deferred-${end}`;
      let mountedAt = '';
      await withMounts(
        await sn.prepare(key, 'B'),
        async (d) => {
          mountedAt = d;
          await writeFile(join(d, 'g'), end);
        },
        { deferUnmount: true },
      );
      // The snapshot's own tree is complete and readable at once (what a diff reads).
      expect(await readFile(join((await sn.layout(key)).dir, 'g'), 'utf8')).toBe(end);
      if (end === 'commit') await sn.commit(`C-${end}`, key);
      else await sn.remove(key);
      expect(await isMountPoint(mountedAt)).toBe(false);
      expect(await readdir(join(sn.root, 'mounts'))).toEqual([]);
    }
    // Read-only views are unmounted before withMounts returns, deferred or not.
    let viewDir = '';
    await withMounts(await sn.view('v', 'B'), async (d) => void (viewDir = d), { deferUnmount: true });
    expect(await isMountPoint(viewDir)).toBe(false);
  });

  it('sweeps what a dead process left behind and keeps the rest', async () => {
    await sn.prepare('base');
    await sn.commit('C', 'base');
    await sn.prepare('mine', 'C'); // owned by this (live) process: kept
    await sn.prepare('crashed', 'C');
    await sn.view('crashed-view', 'C');
    const dead = '999999999.1';
    for (const key of ['crashed', 'crashed-view']) {
      const metaPath = join(sn.root, 'metadata', `${createHash('sha256').update(key).digest('hex')}.json`);
      const meta = JSON.parse(await readFile(metaPath, 'utf8')) as { owner: string };
      meta.owner = dead;
      await writeFile(metaPath, JSON.stringify(meta));
    }
    // A mount left by the dead process, and a snapshot dir nobody references.
    const leftover = join(sn.root, 'mounts', `${dead}-abcdef`);
    await mkdir(leftover);
    await mountAll(await sn.mounts('crashed'), leftover);
    await mkdir(join(sn.root, 'snapshots', 'orphan00', 'fs'), { recursive: true });

    const report = await sn.sweep();
    expect(report.unmounted).toEqual([leftover]);
    expect(report.removedSnapshots.sort()).toEqual(['crashed', 'crashed-view']);
    expect(report.removedDirs).toEqual(['orphan00']);
    expect(await isMountPoint(leftover)).toBe(false);
    expect(await readdir(join(sn.root, 'mounts'))).toEqual([]);
    expect((await sn.list()).map((i) => i.key).sort()).toEqual(['C', 'mine']);
    expect((await readdir(join(sn.root, 'snapshots'))).length).toBe(2);
  });

  it('a kept active snapshot outlives its owner: sweep and check leave it, remove takes it', async () => {
    await sn.prepare('base');
    await sn.commit('C', 'base');
    await withMounts(await sn.prepare('container', 'C'), (d) => writeFile(join(d, 'data'), 'written'));
    await sn.keep('container');
    // As a later process sees it: the owner that kept it is gone.
    const meta = JSON.parse(await readFile(join(sn.root, 'metadata', `${createHash('sha256').update('container').digest('hex')}.json`), 'utf8')) as { owner?: string };
    expect(meta.owner).toBeUndefined();
    expect((await sn.sweep()).removedSnapshots).toEqual([]);
    expect(await sn.check()).toEqual([]);
    await withMounts(await sn.mounts('container'), async (d) => expect(await readFile(join(d, 'data'), 'utf8')).toBe('written'));
    await expect(sn.keep('C')).rejects.toThrow(/not active/);
    await sn.remove('container');
    expect((await sn.list()).map((i) => i.key)).toEqual(['C']);
  });
});

describe('snapshotter selection', () => {
  it("'auto' picks overlayfs here and a root keeps its driver", async () => {
    const dir = await tempDir('builder-sn-auto-');
    try {
      const root = join(dir.path, 'root');
      const sn = await createSnapshotter(root);
      expect(sn.name).toBe('overlayfs');
      expect((await readFile(join(root, 'driver'), 'utf8')).trim()).toBe('overlayfs');
      expect((await createSnapshotter(root, 'auto')).name).toBe('overlayfs');
      await expect(createSnapshotter(root, 'native')).rejects.toThrow(/cannot be opened as native/);
      expect((await readdir(root)).sort()).toEqual(['driver', 'metadata', 'mounts', 'snapshots', 'trash']);
      expect(await readdir(join(root, 'mounts'))).toEqual([]);
    } finally {
      await dir.cleanup();
    }
  });

  // ext4 (this machine's file system) places subdirectories of a top directory in block groups
  // of their own; elsewhere lsattr cannot tell, and the mark is only a hint.
  it.each(kinds)('a new %s root marks its snapshots directory as the top of separate trees (chattr +T)', async (kind) => {
    const dir = await tempDir('builder-sn-topdir-');
    try {
      const root = join(dir.path, 'root');
      await createSnapshotter(root, kind);
      const attrs = spawnSync('lsattr', ['-d', join(root, 'snapshots')], { encoding: 'utf8' });
      if (attrs.status !== 0) return;
      expect(attrs.stdout.split(' ')[0]).toContain('T');
      expect(spawnSync('lsattr', ['-d', join(root, 'metadata')], { encoding: 'utf8' }).stdout.split(' ')[0]).not.toContain('T');
    } finally {
      await dir.cleanup();
    }
  });

  it('the overlay probe of a process killed with its test mount up is unmounted and removed by the next sweep', async () => {
    const dir = await tempDir('builder-sn-probe-');
    const root = join(dir.path, 'root');
    try {
      await mkdir(root);
      // The compiled library, as the CLI runs it (the test suite builds it first).
      const lib = fileURLToPath(new URL('../../dist/snapshotter/index.js', import.meta.url));
      expect(existsSync(lib), `${lib} is missing: run npm run build`).toBe(true);
      const probeLoop = `const { overlaySupported } = await import(${JSON.stringify(lib)}); for (;;) await overlaySupported(process.argv[1]);`;
      let leftover = false;
      for (let attempt = 0; attempt < 20 && !leftover; attempt++) {
        const child = spawn(process.execPath, ['--input-type=module', '-e', probeLoop, root], { stdio: 'ignore' });
        const exited = once(child, 'exit');
        // Freeze the prober and its command shells as soon as the test mount shows (it is up for
        // only a moment: mount and unmount are syscalls of a helper), or at a random moment,
        // until one is frozen with it up; then kill them there, as a Ctrl-\ or an OOM kill would.
        for (let i = 0; i < 100 && !leftover; i++) {
          await sleep(Math.random() * 2);
          for (const until = Date.now() + 8; Date.now() < until && mountsUnder(root).length === 0; );
          const groups = commandShellGroups(child.pid!);
          child.kill('SIGSTOP');
          for (const g of groups) signalGroup(g, 'SIGSTOP');
          leftover = mountsUnder(root).length > 0;
          const signal = leftover ? 'SIGKILL' : 'SIGCONT';
          for (const g of groups) signalGroup(g, signal);
          child.kill(signal);
        }
        child.kill('SIGKILL');
        await exited;
      }
      expect(leftover, 'no prober was caught with its test mount up').toBe(true);

      const sn = await createSnapshotter(root, 'overlayfs');
      const report = await sn.sweep();
      expect(report.unmounted.length).toBeGreaterThan(0);
      expect(mountsUnder(root)).toEqual([]);
      expect((await readdir(root)).sort()).toEqual(['driver', 'metadata', 'mounts', 'snapshots', 'trash']);
      expect(await readdir(join(root, 'mounts'))).toEqual([]);
    } finally {
      for (const m of mountsUnder(root).reverse()) spawnSync('umount', ['-l', m]);
      await dir.cleanup();
    }
  });
});

function signalGroup(group: number | undefined, signal: NodeJS.Signals): void {
  if (group === undefined) return;
  try {
    process.kill(-group, signal);
  } catch {
    // it has exited
  }
}

/** The process groups of the command shells (runShort's, the mount syscall server) that process `pid` started. */
function commandShellGroups(pid: number): number[] {
  const groups: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean)) {
      try {
        // A command shell runs in a process group of its own (it leads it); other children do not.
        const stat = readFileSync(`/proc/${child}/stat`, 'utf8');
        if (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2] === child) groups.push(Number(child));
      } catch {
        // it exited while we looked
      }
    }
  }
  return groups;
}

describe('overlay mounts', () => {
  it('an overlay that cannot be mounted fails naming the target and the reason, and leaves nothing mounted', async () => {
    const dir = await tempDir('builder-sn-badmount-');
    try {
      const target = join(dir.path, 'target');
      await mkdir(target);
      const missing = join(dir.path, 'no-such-layer');
      const err = await mountAll([{ type: 'overlay', source: 'overlay', options: ['index=off', `lowerdir=${missing}:${missing}2`] }], target).catch((e: unknown) => e);
      expect(String(err)).toContain(target);
      expect(String(err)).toMatch(/No such file or directory/);
      expect(mountsUnder(dir.path)).toEqual([]);
      // A mount stacked over another is unmounted with it.
      const [a, b] = [join(dir.path, 'a'), join(dir.path, 'b')];
      await mkdir(a);
      await mkdir(b);
      await writeFile(join(a, 'f'), 'a');
      await writeFile(join(b, 'f'), 'b');
      await mountAll([{ type: 'overlay', source: 'overlay', options: ['index=off', `lowerdir=${a}:${b}`] }, { type: 'overlay', source: 'overlay', options: ['index=off', `lowerdir=${b}:${a}`] }], target);
      expect(await readFile(join(target, 'f'), 'utf8')).toBe('b');
      expect(mountsUnder(dir.path)).toEqual([target, target]);
      await unmountAll(target);
      expect(mountsUnder(dir.path)).toEqual([]);
    } finally {
      for (const m of mountsUnder(dir.path).reverse()) spawnSync('umount', ['-l', m]);
      await dir.cleanup();
    }
  });

  it('a read-only bind refuses writes and a writable one takes them; both unmount', async () => {
    const dir = await tempDir('builder-sn-bind-');
    try {
      const [source, target] = [join(dir.path, 'source'), join(dir.path, 'target')];
      await mkdir(source);
      await mkdir(target);
      await mountAll([{ type: 'bind', source, options: ['rbind', 'ro'] }], target);
      await expect(writeFile(join(target, 'f'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
      await unmountAll(target);
      await mountAll([{ type: 'bind', source, options: ['rbind', 'rw'] }], target);
      await writeFile(join(target, 'f'), 'x');
      await unmountAll(target);
      expect(await readFile(join(source, 'f'), 'utf8')).toBe('x');
      expect(mountsUnder(dir.path)).toEqual([]);
      const missing = await mountAll([{ type: 'bind', source: join(dir.path, 'gone'), options: ['rbind', 'ro'] }], target).catch((e: unknown) => e);
      expect(String(missing)).toMatch(/No such file or directory/);
      expect(mountsUnder(dir.path)).toEqual([]);
    } finally {
      for (const m of mountsUnder(dir.path).reverse()) spawnSync('umount', ['-l', m]);
      await dir.cleanup();
    }
  });
});

describe('sealed copies', () => {
  it('a sealed copy has the file\'s bytes, runs, and refuses every change', async () => {
    const dir = await tempDir('builder-sn-sealed-');
    try {
      const source = join(dir.path, 'echo');
      await writeFile(source, readFileSync('/bin/echo'), { mode: 0o755 });
      const copy = await sealedCopy(source);
      expect(copy).toMatch(/^\/proc\/\d+\/fd\/\d+$/);
      expect(readFileSync(copy!).equals(readFileSync(source))).toBe(true);
      expect(execFileSync(copy!, ['sealed'], { encoding: 'utf8' })).toBe('sealed\n');
      // Neither through a new descriptor nor by resizing: what runs is what was copied.
      expect(() => writeFileSync(copy!, 'x', { flag: 'r+' })).toThrow(/EPERM/);
      expect(() => truncateSync(copy!, 0)).toThrow(/EPERM/);
      expect(() => appendFileSync(copy!, 'x')).toThrow(/EPERM/);
      // Changing the file afterwards leaves the copy as it was.
      await writeFile(source, 'changed');
      expect(readFileSync(copy!).equals(readFileSync('/bin/echo'))).toBe(true);
      expect(await sealedCopy(join(dir.path, 'missing'))).toBeUndefined();
    } finally {
      await dir.cleanup();
    }
  });
});

describe('overlay lowerdir length', () => {
  it('mounts a 150-layer chain under a long root path', async () => {
    const dir = await tempDir('builder-sn-long-');
    try {
      const sn = await createSnapshotter(join(dir.path, 'r'.repeat(120)), 'overlayfs');
      let parent: string | undefined;
      for (let i = 0; i < 150; i++) {
        const key = `active-${i}`;
        await sn.prepare(key, parent);
        await writeFile(join((await sn.layout(key)).dir, `f${i}`), String(i));
        await sn.commit(`layer-${i}`, key);
        parent = `layer-${i}`;
      }
      const mounts = await sn.prepare('top', parent);
      const options = mounts[0]!.options.join(',');
      expect(options.length).toBeGreaterThan(4096);
      const cmd = mountCommand(mounts[0]!, '/mnt/target');
      expect(cmd.cwd).toBe(join(sn.root, 'snapshots'));
      await withMounts(mounts, async (d) => {
        expect(await readFile(join(d, 'f0'), 'utf8')).toBe('0');
        expect(await readFile(join(d, 'f149'), 'utf8')).toBe('149');
        expect((await readdir(d)).length).toBe(150);
      });
    } finally {
      await dir.cleanup();
    }
  });
});

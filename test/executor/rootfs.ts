// A busybox root filesystem and a RuncExecutor of their own for executor tests, and what a test
// may have left behind (containers, mounts).

import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { RuncExecutor, type RunResult, type RunSpec } from '../../src/executor/runc.js';
import { buildSpec } from '../../src/executor/spec.js';
import { tempDir } from '../snapshotter/helpers.js';

const APPLETS = ['sh', 'mv', 'echo', 'id', 'cat', 'ls', 'ip', 'sleep', 'pwd', 'hostname', 'grep', 'touch', 'kill', 'env', 'wc', 'true', 'unshare', 'mount', 'mkdir', 'chown', 'chmod', 'stat', 'mknod', 'chroot', 'su', 'ln', 'rm', 'date', 'find', 'head', 'dd', 'df'];

export async function makeRootfs(dir: string, opts: { etc?: boolean } = {}): Promise<string> {
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const a of APPLETS) await symlink('busybox', join(rootfs, 'bin', a));
  if (opts.etc !== false) {
    await mkdir(join(rootfs, 'etc'));
    await writeFile(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n');
    await writeFile(join(rootfs, 'etc', 'group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\nother:x:3000:\n');
  }
  return rootfs;
}

export interface ExecutorFixture {
  /** The test's temporary directory. */
  dir: string;
  rootfs: string;
  bundleRoot: string;
  /**
   * The tests' own runc state root: other builds on the machine (the e2e tests run in parallel)
   * have `builder-*` containers in the default one, which must not count as our leftovers.
   */
  stateRoot: string;
  executor: RuncExecutor;
  /** Runs `args` in `rootfs` as root without network, collecting the output; `extra` overrides. */
  run(args: string[], extra?: Partial<RunSpec>): Promise<RunResult & { out: string; err: string }>;
  /** The `builder-*` containers in stateRoot. */
  containers(): string[];
  /** Mount points under dir. */
  mounts(): string[];
}

/** A fresh rootfs and executor for the tests of one file; whatever they leave is removed after. */
export function useExecutor(prefix: string): ExecutorFixture {
  let cleanup = async (): Promise<void> => undefined;
  const fx: ExecutorFixture = {
    dir: '',
    rootfs: '',
    bundleRoot: '',
    stateRoot: '',
    executor: new RuncExecutor(),
    async run(args, extra = {}) {
      let out = '';
      let err = '';
      const result = await fx.executor.run({
        rootfs: fx.rootfs,
        args,
        env: [],
        cwd: '/',
        user: '',
        network: 'none',
        stdout: (c) => (out += c.toString()),
        stderr: (c) => (err += c.toString()),
        ...extra,
      });
      return { ...result, out, err };
    },
    containers() {
      const out = execFileSync('runc', ['--root', fx.stateRoot, 'list', '--format', 'json'], { encoding: 'utf8' }).trim();
      return ((JSON.parse(out || 'null') as Array<{ id: string }> | null) ?? []).map((c) => c.id).filter((id) => id.startsWith('builder-'));
    },
    mounts() {
      return readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[4] ?? '')
        .filter((p) => p.startsWith(`${fx.dir}/`));
    },
  };
  beforeAll(async () => {
    const dir = await tempDir(prefix);
    cleanup = dir.cleanup;
    fx.dir = dir.path;
    fx.rootfs = await makeRootfs(dir.path);
    fx.bundleRoot = join(dir.path, 'bundles');
    fx.stateRoot = join(dir.path, 'runc-state');
    fx.executor = new RuncExecutor({ bundleRoot: fx.bundleRoot, stateRoot: fx.stateRoot });
  });
  afterAll(async () => {
    // Whatever a failed test left running or mounted must not outlive the suite.
    for (const id of fx.containers()) spawnSync('runc', ['--root', fx.stateRoot, 'delete', '--force', id], { stdio: 'ignore' });
    for (const m of fx.mounts().reverse()) spawnSync('umount', [m], { stdio: 'ignore' });
    await cleanup();
  });
  return fx;
}

/**
 * Fills `bundle` (an existing directory) as a run of a process that is gone would have left it:
 * /etc files and a config.json running `args`, owned by a dead process.
 */
export async function writeDeadOwnerBundle(bundle: string, rootfs: string, args: string[]): Promise<void> {
  for (const f of ['hosts', 'resolv.conf', 'hostname']) await writeFile(join(bundle, f), '');
  const config = buildSpec({
    rootfs,
    args,
    env: ['PATH=/bin'],
    cwd: '/',
    user: { uid: 0, gid: 0, additionalGids: [], home: '/' },
    hostname: 'x',
    network: 'host',
    etcFiles: { hosts: join(bundle, 'hosts'), resolvConf: join(bundle, 'resolv.conf'), hostname: join(bundle, 'hostname') },
    annotations: { 'dev.builder.owner': '999999999.1' },
  });
  await writeFile(join(bundle, 'config.json'), JSON.stringify(config));
}

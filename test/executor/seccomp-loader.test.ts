// The compiled seccomp profile (seccomp-filter.ts, seccomp-loader.c): a step started through the
// loader meets the same sandbox as under runc's own seccomp, syscall by syscall and architecture
// by architecture, and a command that cannot start fails with runc's own error.

import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { RuncError, RuncExecutor, type RunSpec } from '../../src/executor/runc.js';
import { defaultSeccompProfile } from '../../src/executor/seccomp.js';
import { compiledSeccomp } from '../../src/executor/seccomp-filter.js';
import { DEFAULT_CAPABILITIES } from '../../src/executor/spec.js';
import { useExecutor } from './rootfs.js';

// Calls each syscall given as NUMBER[:ARG0] and prints what came back, then its seccomp status.
const PROBE = String.raw`
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    char *end;
    long nr = strtol(argv[i], &end, 0), arg = *end == ':' ? strtol(end + 1, 0, 0) : 0;
    errno = 0;
    long r = syscall(nr, arg, 0, 0, 0, 0, 0);
    printf("%s = %ld errno %d\n", argv[i], r, errno);
  }
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  while (f && fgets(line, sizeof line, f)) if (strncmp(line, "Seccomp", 7) == 0 || strncmp(line, "NoNewPrivs", 10) == 0) fputs(line, stdout);
  return 0;
}
`;

// x86_64 numbers: getpid, mount, umount2, unshare, reboot, keyctl, bpf, clone3, personality
// (allowed values and not), socket (AF_UNIX; AF_VSOCK is refused), a number past the last
// syscall; then the x32 ABI's (0x40000000 +) getpid, mount, unshare and one past its last. (The
// i386 ABI goes through int 0x80, which not every kernel a test runs on supports.)
const SYSCALLS = [
  '39', '165', '166', '272', '169', '250', '321', '435', '135:0', '135:8', '135:0x20000', '135:12345',
  '41:1', '41:40', '999', '0x40000027', '0x400000a5', '0x40000110', '0x400003e7',
];

describe('the compiled seccomp profile', () => {
  const fx = useExecutor('builder-seccomp-');
  let cacheDir = '';
  let viaLoader: RuncExecutor;
  let viaRunc: RuncExecutor;

  beforeAll(() => {
    execFileSync('cc', ['-static', '-O2', '-x', 'c', '-o', join(fx.rootfs, 'bin', 'probe'), '-'], { input: PROBE });
    writeFileSync(join(fx.rootfs, 'bin', 'garbage'), 'not a program\n', { mode: 0o755 });
    cacheDir = join(fx.dir, 'seccomp-cache');
    viaLoader = new RuncExecutor({ bundleRoot: fx.bundleRoot, stateRoot: fx.stateRoot, seccompCacheDir: cacheDir });
    viaRunc = new RuncExecutor({ bundleRoot: fx.bundleRoot, stateRoot: fx.stateRoot, seccompLoader: false });
  });

  async function run(executor: RuncExecutor, args: string[], extra: Partial<RunSpec> = {}): Promise<{ exitCode: number; out: string; err: string } | { error: string }> {
    let out = '';
    let err = '';
    try {
      const r = await executor.run({ rootfs: fx.rootfs, args, env: [], cwd: '/', user: '', network: 'none', stdout: (c) => (out += c.toString()), stderr: (c) => (err += c.toString()), ...extra });
      return { exitCode: r.exitCode, out, err };
    } catch (e) {
      expect(e).toBeInstanceOf(RuncError);
      return { error: (e as Error).message };
    }
  }

  it('lets through and refuses the same syscalls as runc does with the profile, for root and for a user', async () => {
    for (const user of ['', '1000']) {
      const loaded = await run(viaLoader, ['probe', ...SYSCALLS], { user });
      expect(loaded).toEqual(await run(viaRunc, ['probe', ...SYSCALLS], { user }));
      // And it is a sandbox: a mount (64-bit or x32) is refused, getpid is not.
      const out = 'out' in loaded ? loaded.out : JSON.stringify(loaded);
      expect(out).toContain('\n165 = -1 errno 1\n');
      expect(out).toContain('\n0x400000a5 = -1 errno 1\n');
      expect(out).toMatch(/^39 = \d+ errno 0\n/);
      expect(out).toContain('Seccomp:\t2\nSeccomp_filters:\t1\n');
    }
    // The program was compiled once, into the cache, and nothing of that is left running.
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.bpf'))).toHaveLength(1);
    expect(statSync(cacheDir).mode & 0o777).toBe(0o700);
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    expect(fx.containers()).toEqual([]);
  });

  it('fails to start a command exactly as runc does', async () => {
    const cases: Array<[string[], Partial<RunSpec>]> = [
      [['/no/such/binary'], {}],
      [['/bin/probe/x'], {}],
      [['nonexistent'], {}],
      [['/etc/passwd'], {}],
      [['/etc'], {}],
      [['garbage'], {}],
      [[''], {}],
      // Found only through a relative PATH entry: refused (Go's exec.ErrDot).
      [['probe'], { env: ['PATH=.:/usr/bin'], cwd: '/bin' }],
      [['probe', '39'], { env: ['PATH=/nowhere:/usr/../bin'] }],
      [['probe', '39'], { env: ['PATH='] }],
      // The loader's own modes are not the step's to choose.
      [['--dump', '1'], {}],
      [['--pause'], {}],
    ];
    for (const [args, extra] of cases) {
      const loaded = await run(viaLoader, args, extra);
      expect({ args, ...loaded }).toEqual({ args, ...(await run(viaRunc, args, extra)) });
    }
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    expect(fx.containers()).toEqual([]);
  });

  it('runs steps under the program in the cache', async () => {
    const [program] = readdirSync(cacheDir).filter((f) => f.endsWith('.bpf'));
    const path = join(cacheDir, program!);
    const compiled = readFileSync(path);
    // One instruction that allows everything (BPF_RET|BPF_K, SECCOMP_RET_ALLOW): what a step then meets.
    const allowAll = Buffer.from([0x06, 0, 0, 0, 0, 0, 0xff, 0x7f]);
    writeFileSync(path, allowAll);
    try {
      // unshare(0) changes nothing: only the profile refuses it.
      expect(await run(viaLoader, ['probe', '272'])).toMatchObject({ exitCode: 0, out: expect.stringMatching(/^272 = 0 errno 0\n/) as unknown });
    } finally {
      writeFileSync(path, compiled);
    }
    expect(await run(viaLoader, ['probe', '272'])).toMatchObject({ out: expect.stringMatching(/^272 = -1 errno 1\n/) as unknown });
  });

  it('leaves no container when a build is interrupted (Ctrl-C) while the profile compiles', async () => {
    // A program of its own, in a process group of its own, as a build from a terminal is: the
    // terminal's SIGINT reaches it and the runc it started. With a handler, the program stops its
    // run and waits, as builder does; without one, it dies at once and the next build sweeps.
    const library = fileURLToPath(new URL('../../dist/executor/runc.js', import.meta.url));
    for (const handler of [true, false]) {
      const script = `import { RuncExecutor } from ${JSON.stringify(library)};
const ac = new AbortController();
if (${handler}) process.on('SIGINT', () => ac.abort());
const executor = new RuncExecutor({ bundleRoot: ${JSON.stringify(fx.bundleRoot)}, stateRoot: ${JSON.stringify(fx.stateRoot)}, seccompCacheDir: ${JSON.stringify(join(fx.dir, `interrupted-${handler}`))} });
await executor.run({ rootfs: ${JSON.stringify(fx.rootfs)}, args: ['true'], env: [], cwd: '/', user: '', network: 'none', signal: ac.signal, stdout() {}, stderr() {} }).catch(() => undefined);`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { detached: true, stdio: 'ignore' });
      const exited = new Promise((resolve) => child.on('exit', resolve));
      let compiling: string | undefined;
      for (let i = 0; i < 1000 && !compiling; i++) {
        compiling = fx.containers()[0];
        if (!compiling) await new Promise((r) => setTimeout(r, 5));
      }
      expect(compiling).toBeDefined();
      process.kill(-child.pid!, 'SIGINT');
      await exited;
      if (handler) {
        expect(fx.containers()).toEqual([]);
      } else {
        await fx.executor.sweep();
        expect(fx.containers()).toEqual([]);
      }
      expect(await readdir(fx.bundleRoot)).toEqual([]);
    }
  });

  it('does not use a cache directory someone else can write to: runc compiles the profile', async () => {
    const open = join(fx.dir, 'open-cache');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const opts = { runc: execFileSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).trim(), rootArgs: ['--root', fx.stateRoot], bundleRoot: fx.bundleRoot, cacheDir: open, containerId: () => `builder-${Date.now()}`, annotations: {}, removeContainer: async () => undefined };
    expect(await compiledSeccomp(defaultSeccompProfile(DEFAULT_CAPABILITIES), opts)).toBeUndefined();
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    expect(fx.containers()).toEqual([]);
  });
});

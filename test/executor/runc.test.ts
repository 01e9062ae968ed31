import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AbortError, RuncError, RuncExecutor } from '../../src/executor/runc.js';
import { makeRootfs, useExecutor, writeDeadOwnerBundle } from './rootfs.js';

describe('RuncExecutor', () => {
  const fx = useExecutor('builder-runc-');
  const run = fx.run;
  const builderContainers = fx.containers;

  it('streams stdout and stderr and reports the exit code', async () => {
    const r = await run(['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toEqual({ exitCode: 3, out: 'out\n', err: 'err\n' });
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    expect(builderContainers()).toEqual([]);
  });

  it('gives every run no input, the first one and those after it alike', async () => {
    for (let i = 0; i < 3; i++) {
      // `cat` ends at once: its input is at its end (an open, silent one would hang the run).
      const r = await run(['sh', '-c', 'cat; echo "done $0"', `run-${i}`]);
      expect(r).toEqual({ exitCode: 0, out: `done run-${i}\n`, err: '' });
    }
  });

  it('runs from a bundle directory whose path holds spaces, quotes and $', async () => {
    const bundleRoot = join(fx.dir, `bundles 'with' "odd" $HOME`);
    const executor = new RuncExecutor({ bundleRoot, stateRoot: fx.stateRoot });
    for (let i = 0; i < 2; i++) {
      let out = '';
      const r = await executor.run({ rootfs: fx.rootfs, args: ['sh', '-c', 'echo ok'], env: [], cwd: '/', user: '', network: 'none', stdout: (c) => (out += c.toString()), stderr: () => undefined });
      expect({ exitCode: r.exitCode, out }).toEqual({ exitCode: 0, out: 'ok\n' });
    }
    expect(await readdir(bundleRoot)).toEqual([]);
  });

  it('keeps nothing alive after its runs: a program that ran containers exits by itself', () => {
    // The compiled library (npm run build), as an embedding program loads it.
    const library = fileURLToPath(new URL('../../dist/executor/runc.js', import.meta.url));
    const script = `import { RuncExecutor } from ${JSON.stringify(library)};
const executor = new RuncExecutor({ bundleRoot: ${JSON.stringify(fx.bundleRoot)}, stateRoot: ${JSON.stringify(fx.stateRoot)} });
for (let i = 0; i < 2; i++) await executor.run({ rootfs: ${JSON.stringify(fx.rootfs)}, args: ['true'], env: [], cwd: '/', user: '', network: 'none', stdout() {}, stderr() {} });
console.log('ran');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect({ status: r.status, out: r.stdout, err: r.stderr }).toEqual({ status: 0, out: 'ran\n', err: '' });
  });

  it('runs steps it was told of ahead of time, the first one and those after it, and keeps nothing alive', () => {
    // willRun() makes the spare and runc's sealed copy; a program that used them still exits by itself.
    const library = fileURLToPath(new URL('../../dist/executor/runc.js', import.meta.url));
    const script = `import { RuncExecutor } from ${JSON.stringify(library)};
const executor = new RuncExecutor({ bundleRoot: ${JSON.stringify(fx.bundleRoot)}, stateRoot: ${JSON.stringify(fx.stateRoot)} });
for (let i = 0; i < 3; i++) {
  executor.willRun();
  if (i === 1) await new Promise((r) => setTimeout(r, 200)); // the sealed copy is ready by now
  let out = '';
  const r = await executor.run({ rootfs: ${JSON.stringify(fx.rootfs)}, args: ['sh', '-c', 'cat; echo "run $0"', String(i)], env: [], cwd: '/', user: '', network: 'none', stdout(c) { out += c; }, stderr(c) { out += c; } });
  process.stdout.write(r.exitCode + ' ' + out);
}`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect({ status: r.status, out: r.stdout, err: r.stderr }).toEqual({ status: 0, out: '0 run 0\n0 run 1\n0 run 2\n', err: '' });
    expect(builderContainers()).toEqual([]);
  });

  it('delivers output while the process is still running', async () => {
    // The command goes on only once the test has seen its first line: output held back until
    // the process exits would never let it (it gives up after a minute, and says so).
    const gate = join(fx.rootfs, 'gate');
    const waitForGate = 'i=0; while [ ! -e /gate ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done';
    let seen = '';
    try {
      const r = await run(['sh', '-c', `echo first; ${waitForGate}; [ -e /gate ] && echo second || echo gave up`], {
        stdout: (c) => {
          seen += c.toString();
          if (seen.startsWith('first\n')) writeFileSync(gate, '');
        },
      });
      expect(r.exitCode).toBe(0);
      expect(seen).toBe('first\nsecond\n');
    } finally {
      await rm(gate, { force: true });
    }
  });

  it('sets env defaults, creates the working directory and uses the hostname', async () => {
    const r = await run(['sh', '-c', 'echo "$FOO|$PATH|$HOME"; pwd; hostname; cat /etc/hostname; grep -c localhost /etc/hosts; touch /etc/hosts 2>/dev/null || echo ro'], {
      env: ['FOO=bar'],
      cwd: '/work/dir',
    });
    expect(r.out.split('\n')).toEqual([
      'bar|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/root',
      '/work/dir',
      'buildkitsandbox',
      'buildkitsandbox',
      '2',
      'ro',
      '',
    ]);
    const custom = await run(['sh', '-c', 'echo $PATH $HOME; hostname'], { env: ['PATH=/bin', 'HOME=/tmp'], hostname: 'box' });
    expect(custom.out).toBe('/bin /tmp\nbox\n');
  });

  it('resolves users by id and by name', async () => {
    const ids = 'echo $(id -u) $(id -g) "$(id -G)" $HOME';
    expect((await run(['sh', '-c', ids], { user: '1234:5678' })).out).toBe('1234 5678 5678 /\n');
    expect((await run(['sh', '-c', ids], { user: '1234' })).out).toBe('1234 0 0 /\n');
    expect((await run(['sh', '-c', ids], { user: 'app' })).out).toBe('1000 1000 1000 2000 /home/app\n');
    expect((await run(['sh', '-c', ids], { user: '1000' })).out).toBe('1000 1000 1000 2000 /home/app\n');
    expect((await run(['sh', '-c', ids], { user: 'app:other' })).out).toBe('1000 3000 3000 /home/app\n');
    expect((await run(['sh', '-c', ids], { user: 'app:42' })).out).toBe('1000 42 42 /home/app\n');
    await expect(run(['id'], { user: 'ghost' })).rejects.toThrow('unable to find user ghost: no matching entries in passwd file');
    await expect(run(['id'], { user: 'app:ghosts' })).rejects.toThrow('unable to find group ghosts: no matching entries in group file');
  });

  it('gives network none only a loopback interface, up', async () => {
    const r = await run(['sh', '-c', 'ls /sys/class/net; ip -o -4 addr show lo']);
    const [ifaces, ...rest] = r.out.trim().split('\n');
    expect(ifaces).toBe('lo');
    expect(rest.join('\n')).toContain('127.0.0.1/8');
    const host = await run(['ls', '/sys/class/net'], { network: 'host' });
    expect(host.out.trim().split(/\s+/).sort()).toEqual(execFileSync('ls', ['/sys/class/net'], { encoding: 'utf8' }).trim().split(/\s+/).sort());
  });

  it("applies Docker's capabilities, no_new_privs and masked paths", async () => {
    const r = await run(['sh', '-c', 'grep -E "^(CapBnd|CapEff|NoNewPrivs)" /proc/self/status; wc -c < /proc/keys; echo 1 2>/dev/null > /proc/sys/vm/drop_caches || echo ro']);
    expect(r.out).toContain('CapBnd:\t00000000a80425fb');
    expect(r.out).toContain('CapEff:\t00000000a80425fb');
    expect(r.out).toMatch(/NoNewPrivs:\t1\n0\nro\n$/);
  });

  it("applies Docker's default seccomp profile: no new namespaces, no mounts", async () => {
    // Without a profile, a user namespace gives back every capability, and mounts with it.
    const userns = await run(['sh', '-c', 'mkdir -p /m && unshare -Urm sh -c "mount -t tmpfs t /m && echo mounted"']);
    expect(userns.out).not.toContain('mounted');
    expect(userns.exitCode).not.toBe(0);
    expect(userns.err).toMatch(/unshare.*Operation not permitted/);
    // A plain syscall check: unshare(CLONE_NEWUSER|CLONE_NEWNET) is refused with EPERM.
    const netns = await run(['unshare', '-Un', 'true']);
    expect(netns.exitCode).not.toBe(0);
    expect(netns.err).toMatch(/Operation not permitted/);
    const status = await run(['grep', '^Seccomp:', '/proc/self/status']);
    expect(status.out).toBe('Seccomp:\t2\n');
  });

  it('still runs what ordinary build steps do under the profile', async () => {
    const script = [
      'mkdir -p /srv/a/b && echo hi > /srv/a/b/f',
      'chown -R 1000:1000 /srv/a && chmod 0640 /srv/a/b/f && stat -c "%u:%g %a" /srv/a/b/f',
      'ln -s b /srv/a/l && cat /srv/a/l/f',
      'mknod /srv/null c 1 3 && stat -c %F /srv/null',
      'chroot / true && echo chroot',
      'su app -s /bin/sh -c "id -u"',
      'find /srv -type f | head -1',
      'rm -rf /srv',
    ].join(' && ');
    const r = await run(['sh', '-c', script]);
    expect(r.err).toBe('');
    expect(r.out.split('\n')).toEqual(['1000:1000 640', 'hi', 'character special file', 'chroot', '1000', '/srv/a/b/f', '']);
    expect(r.exitCode).toBe(0);
  });

  it('runs an insecure step privileged: all capabilities, no seccomp, mounts allowed', async () => {
    const hostCaps = /^CapEff:\t(\w+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    const r = await run(['sh', '-c', 'grep -E "^(CapEff|Seccomp):" /proc/self/status; mkdir -p /m && mount -t tmpfs t /m && echo mounted; wc -c < /proc/keys | grep -vx 0 >/dev/null && echo keys; ls /dev/fuse'], {
      security: 'insecure',
    });
    expect(r.err).toBe('');
    expect(r.out).toBe(`CapEff:\t${hostCaps}\nSeccomp:\t0\nmounted\nkeys\n/dev/fuse\n`);
    expect(builderContainers()).toEqual([]);
  });

  it('reports death by signal as 128+n', async () => {
    // The container's init ignores signals sent from inside its own pid namespace, so the
    // shell reports its child's death the way runc reports init's: 128+n.
    const r = await run(['sh', '-c', 'sh -c "kill -9 \\$\\$"; exit $?']);
    expect(r.exitCode).toBe(137);
    expect(r.signal).toBe('SIGKILL');
  });

  it('throws when runc cannot start the process', async () => {
    await expect(run(['/no/such/binary'])).rejects.toBeInstanceOf(RuncError);
    await expect(run(['/no/such/binary'])).rejects.toThrow(/no such file or directory/);
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    expect(builderContainers()).toEqual([]);
  });

  it('kills and cleans up on abort', async () => {
    const ac = new AbortController();
    // Longer than the test's timeout: a run that is not killed fails it.
    const pending = run(['sh', '-c', 'echo started; sleep 600'], {
      signal: ac.signal,
      stdout: () => ac.abort(),
    });
    await expect(pending).rejects.toBeInstanceOf(AbortError);
    expect(builderContainers()).toEqual([]);
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    // Already aborted: nothing starts.
    await expect(run(['true'], { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
  });

  it('removes the mount points runc had to create', async () => {
    const bare = await makeRootfs(join(fx.dir, 'bare'), { etc: false });
    const before = (await readdir(bare)).sort();
    const r = await fx.executor.run({
      rootfs: bare,
      args: ['sh', '-c', 'cat /etc/hostname; ls / | wc -l'],
      env: [],
      cwd: '/app',
      user: '',
      network: 'none',
      stdout: () => undefined,
      stderr: () => undefined,
    });
    expect(r.exitCode).toBe(0);
    expect((await readdir(bare)).sort()).toEqual([...before, 'app'].sort());
  });

  it('never removes a mount point stub through a symlink the step put in its place', async () => {
    const bare = await makeRootfs(join(fx.dir, 'swap'), { etc: false });
    const victim = join(fx.dir, 'victim');
    await mkdir(victim);
    await writeFile(join(victim, 'hosts'), '');
    const r = await run(['sh', '-c', `mv /etc /etc.moved && ln -s ${victim} /etc && echo swapped`], { rootfs: bare });
    expect(r.out).toBe('swapped\n');
    expect(await readdir(victim)).toEqual(['hosts']);
  });

  it('keeps a working directory that is also a mount point parent', async () => {
    const bare = await makeRootfs(join(fx.dir, 'bare2'), { etc: false });
    const r = await fx.executor.run({ rootfs: bare, args: ['true'], env: [], cwd: '/etc', user: '', network: 'none', stdout: () => undefined, stderr: () => undefined });
    expect(r.exitCode).toBe(0);
    expect(await readdir(join(bare, 'etc'))).toEqual([]);
  });

  it('refuses a working directory inside /proc, where runc could leak host fds', async () => {
    await expect(run(['true'], { cwd: '/proc/self/fd/7' })).rejects.toThrow(/working directory \/proc\/self\/fd\/7 is inside \/proc/);
    await expect(run(['true'], { cwd: '/tmp/../proc/1/cwd' })).rejects.toThrow(/inside \/proc/);
    await symlink('/proc/self/fd', join(fx.rootfs, 'fds'));
    await expect(run(['true'], { cwd: '/fds/5' })).rejects.toThrow(/\/fds\/5 \(resolves to \/proc\/self\/fd\/5\) is inside \/proc/);
    expect(existsSync(join(fx.rootfs, 'proc', 'self'))).toBe(false);
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    expect(builderContainers()).toEqual([]);
    // /proc itself is a plain directory as far as the working directory goes.
    expect((await run(['pwd'], { cwd: '/proc' })).out).toBe('/proc\n');
  });

  it('has nothing to sweep without runc', async () => {
    expect(await new RuncExecutor({ runc: '/nonexistent/runc', bundleRoot: fx.bundleRoot, stateRoot: fx.stateRoot }).sweep()).toEqual([]);
  });

  it('sweeps without asking runc when its state directory holds no container of ours', async () => {
    // A runc that fails whenever it is run: the sweep must not need it.
    const failing = new RuncExecutor({ runc: '/bin/false', bundleRoot: fx.bundleRoot, stateRoot: fx.stateRoot });
    expect(fx.containers()).toEqual([]);
    expect(await failing.sweep()).toEqual([]);
    const missingState = new RuncExecutor({ runc: '/bin/false', bundleRoot: fx.bundleRoot, stateRoot: join(fx.dir, 'no-such-state') });
    expect(await missingState.sweep()).toEqual([]);
    // With one of ours there, runc is asked (and its failure reported).
    await mkdir(join(fx.stateRoot, 'builder-listed'), { recursive: true });
    try {
      await expect(failing.sweep()).rejects.toThrow(/\/bin\/false .*list/);
    } finally {
      await rm(join(fx.stateRoot, 'builder-listed'), { recursive: true });
    }
  });

  it('sweeps containers left by a dead process', async () => {
    const bundle = join(fx.bundleRoot, 'builder-sweeptest');
    await mkdir(bundle, { recursive: true });
    await writeDeadOwnerBundle(bundle, fx.rootfs, ['sleep', '60']);
    const started = spawnSync('runc', ['--root', fx.stateRoot, 'run', '-d', '--bundle', bundle, 'builder-sweeptest'], { stdio: 'ignore' });
    expect(started.status).toBe(0);
    expect(builderContainers()).toEqual(['builder-sweeptest']);

    expect(await fx.executor.sweep()).toEqual(['builder-sweeptest']);
    expect(builderContainers()).toEqual([]);
    expect(await readdir(fx.bundleRoot)).toEqual([]);
  });
});

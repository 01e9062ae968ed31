// RUN --mount in the executor, under real runc: bind, tmpfs, secret and ssh mounts as the
// process inside sees them, and what is left on the host and in the root filesystem afterwards.

import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { release } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { mountMemoryBundle } from '../../src/executor/mounts.js';
import { AbortError, RuncExecutor, type AgentConnector, type ContainerMount, type RunSpec } from '../../src/executor/runc.js';
import { makeRootfs, useExecutor, writeDeadOwnerBundle } from './rootfs.js';

/** Every file under `dir` (not following symlinks), by path. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(path));
    else if (e.isFile()) out.push(path);
  }
  return out;
}

function filesContaining(dir: string, needle: string): string[] {
  if (!existsSync(dir)) return [];
  return filesUnder(dir).filter((f) => readFileSync(f).includes(needle));
}

/** An agent that answers each connection with what it was sent, upper-cased, once the client has sent everything. */
const shoutingAgent: AgentConnector = {
  connect(): Duplex {
    const received: Buffer[] = [];
    const agent: Duplex = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, done) {
        received.push(chunk);
        done();
      },
      final(done) {
        // Later, as an agent answers over its own connection.
        setTimeout(() => {
          agent.push(Buffer.concat(received).toString().toUpperCase());
          agent.push(null);
          done();
        }, 50);
      },
    });
    return agent;
  },
};

/**
 * The host's /usr, read-only, for the programs busybox lacks (a unix socket client): perl, and
 * ssh-add when installed. /lib64 and /lib point into it, as on a merged-/usr Debian.
 */
async function withHostUsr(rootfs: string): Promise<ContainerMount[]> {
  for (const l of ['lib', 'lib64']) if (!lstatSync(join(rootfs, l), { throwIfNoEntry: false })) await symlink(`usr/${l}`, join(rootfs, l));
  return [{ type: 'bind', target: '/usr', source: '/usr', readonly: true }];
}

/** Connects to $SOCK, sends "hello agent", shuts down its sending side and prints the answer. */
const SOCKET_CLIENT = 'use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => $ENV{SOCK}) or die "connect: $!\\n"; print $s "hello agent"; shutdown($s, 1); print while <$s>;';

describe('RuncExecutor mounts', () => {
  const fx = useExecutor('builder-mounts-');
  const run = (script: string[], extra: Partial<RunSpec> = {}): ReturnType<typeof fx.run> => fx.run(['sh', '-c', ...script], extra);

  it('binds read-only or writable, a directory or a file', async () => {
    const host = join(fx.dir, 'host-src');
    await mkdir(host);
    await writeFile(join(host, 'f'), 'from host\n');
    await writeFile(join(fx.dir, 'app.conf'), 'conf\n');
    const r = await run(['cat /ro/f /etc/app.conf; touch /ro/new 2>/dev/null || echo ro refused; echo written > /rw/new && echo rw ok'], {
      mounts: [
        { type: 'bind', target: '/ro', source: host, readonly: true },
        { type: 'bind', target: '/rw', source: host, readonly: false },
        { type: 'bind', target: '/etc/app.conf', source: join(fx.dir, 'app.conf'), readonly: true },
      ],
    });
    expect(r).toEqual({ exitCode: 0, out: 'from host\nconf\nro refused\nrw ok\n', err: '' });
    // A writable bind writes through (throwaway copies are the caller's business).
    expect(await readFile(join(host, 'new'), 'utf8')).toBe('written\n');
    expect(existsSync(join(fx.rootfs, 'ro')) || existsSync(join(fx.rootfs, 'rw')) || existsSync(join(fx.rootfs, 'etc', 'app.conf'))).toBe(false);
  });

  it('mounts an empty tmpfs over image content, with its size limit, and keeps nothing of it', async () => {
    await mkdir(join(fx.rootfs, 'cache'));
    await writeFile(join(fx.rootfs, 'cache', 'old'), 'image content\n');
    const r = await run(['ls -A /cache | wc -l; echo new > /cache/new; dd if=/dev/zero of=/cache/big bs=1024 count=2048 2>&1 | grep -o "No space left"; grep " /cache " /proc/mounts'], {
      mounts: [{ type: 'tmpfs', target: '/cache', size: 1 << 20 }],
    });
    const [count, full, mountLine] = r.out.trim().split('\n');
    expect(count).toBe('0');
    expect(full).toBe('No space left');
    expect(mountLine).toMatch(/^tmpfs \/cache tmpfs rw,nosuid,.*size=1024k/);
    expect(readdirSync(join(fx.rootfs, 'cache'))).toEqual(['old']);
    await rm(join(fx.rootfs, 'cache'), { recursive: true });
  });

  it('mounts later targets inside earlier mounts', async () => {
    const r = await run(['ls -A /scratch; grep -c " /scratch/inner " /proc/mounts'], {
      mounts: [
        { type: 'tmpfs', target: '/scratch' },
        { type: 'tmpfs', target: '/scratch/inner' },
      ],
    });
    expect(r.out).toBe('inner\n1\n');
    expect(existsSync(join(fx.rootfs, 'scratch'))).toBe(false);
  });

  it('shows a secret file with its mode and owner, and secret env, and keeps them off the disk', async () => {
    const secret = `s3cr3t-${randomBytes(8).toString('hex')}`;
    const envSecret = `env-${randomBytes(8).toString('hex')}`;
    const gate = join(fx.rootfs, 'gate');
    const seen: { bundleMount?: string; onDiskDuringRun?: string[] } = {};
    const script = [
      'stat -c "%a %u %g" /run/secrets/token',
      'su app -s /bin/sh -c "cat /run/secrets/token"; echo',
      // Even root, whom file modes do not stop, cannot write it.
      'echo x >> /run/secrets/token 2>/dev/null || echo read-only',
      'echo "$API_TOKEN"',
      'echo ready',
      'i=0; while [ ! -e /gate ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done',
    ].join('; ');
    let out = '';
    const r = await run([script], {
      mounts: [{ type: 'secret', target: '/run/secrets/token', data: Buffer.from(secret), mode: 0o440, uid: 1000, gid: 2000 }],
      secretEnv: [`API_TOKEN=${envSecret}`],
      stdout: (c) => {
        out += c.toString();
        if (!out.endsWith('ready\n')) return;
        // While the step runs: the bundle is a tmpfs, and no file on a disk holds either secret.
        const bundle = join(fx.bundleRoot, readdirSync(fx.bundleRoot)[0]!);
        seen.bundleMount = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === bundle);
        seen.onDiskDuringRun = [fx.stateRoot, fx.rootfs].flatMap((d) => [...filesContaining(d, secret), ...filesContaining(d, envSecret)]);
        writeFileSync(gate, '');
      },
    });
    await rm(gate, { force: true });
    expect(r.exitCode).toBe(0);
    expect(out.split('\n')).toEqual(['440 1000 2000', secret, 'read-only', envSecret, 'ready', '']);
    expect(seen.bundleMount).toMatch(/ - tmpfs tmpfs rw,.*mode=700/);
    // Kept out of swap where the kernel can (Linux 6.4 and later).
    const [major = 0, minor = 0] = release().split('.').map(Number);
    if (major > 6 || (major === 6 && minor >= 4)) expect(seen.bundleMount).toMatch(/,noswap/);
    expect(seen.onDiskDuringRun).toEqual([]);
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    expect(fx.mounts()).toEqual([]);
    expect(existsSync(join(fx.rootfs, 'run'))).toBe(false);
    expect([...filesContaining(fx.rootfs, secret), ...filesContaining(fx.rootfs, envSecret), ...filesContaining(fx.stateRoot, envSecret)]).toEqual([]);
    // Another user (neither owner nor group) cannot read it.
    const other = await run(['cat /run/secrets/token'], { user: '1234:1234', mounts: [{ type: 'secret', target: '/run/secrets/token', data: Buffer.from(secret), mode: 0o440, uid: 1000, gid: 2000 }] });
    expect(other.exitCode).not.toBe(0);
    expect(other.err).toMatch(/Permission denied/);
  });

  it('leaves no mount point stub behind, also through symlinks, and leaves existing directories alone', async () => {
    const bare = await makeRootfs(join(fx.dir, 'bare'));
    // An absolute symlink resolves inside the root filesystem, never on the host.
    const hostDir = `/builder-stub-test-${randomBytes(6).toString('hex')}`;
    await symlink(`${hostDir}/data`, join(bare, 'data'));
    await mkdir(join(bare, 'srv', 'keep'), { recursive: true });
    const before = filesAndDirs(bare);
    const r = await run(['ls -d /data/x /srv/keep/sub /etc/app/conf /run/s/a'], {
      mounts: [
        { type: 'tmpfs', target: '/data/x' },
        { type: 'tmpfs', target: '/srv/keep/sub' },
        { type: 'bind', target: '/etc/app/conf', source: join(fx.dir, 'app.conf'), readonly: true },
        { type: 'secret', target: '/run/s/a', data: Buffer.from('x'), mode: 0o400, uid: 0, gid: 0 },
        { type: 'ssh', target: '/run/ssh.sock', agent: shoutingAgent, mode: 0o600, uid: 0, gid: 0 },
      ],
      rootfs: bare,
    });
    expect(r.err).toBe('');
    expect(r.exitCode).toBe(0);
    expect(existsSync(hostDir)).toBe(false);
    expect(filesAndDirs(bare)).toEqual(before);
  });

  function filesAndDirs(root: string): string[] {
    return readdirSync(root, { recursive: true, encoding: 'utf8' }).sort();
  }

  it('serves an agent socket with its mode and owner; it is gone after the run', async () => {
    const mounts: ContainerMount[] = [
      ...(await withHostUsr(fx.rootfs)),
      { type: 'ssh', target: '/run/buildkit/ssh_agent.0', agent: shoutingAgent, mode: 0o600, uid: 1000, gid: 1000 },
    ];
    const env = ['SOCK=/run/buildkit/ssh_agent.0'];
    const r = await run(['stat -c "%a %u %g %F" $SOCK; perl -e "$0"', SOCKET_CLIENT], { mounts, env, user: 'app' });
    expect(r.err).toBe('');
    expect(r.out).toBe('600 1000 1000 socket\nHELLO AGENT');
    const other = await run(['perl -e "$0"', SOCKET_CLIENT], { mounts, env, user: '1234' });
    expect(other.err).toBe('connect: Permission denied\n');
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    expect(existsSync(join(fx.rootfs, 'run'))).toBe(false);
    expect(existsSync(join(fx.rootfs, 'usr'))).toBe(false);
  });

  it('serves an agent socket from a bundle path longer than a socket address holds', async () => {
    const executor = new RuncExecutor({ bundleRoot: join(fx.dir, 'state-'.repeat(20)), stateRoot: fx.stateRoot });
    let out = '';
    const r = await executor.run({
      rootfs: fx.rootfs,
      args: ['sh', '-c', 'perl -e "$0"', SOCKET_CLIENT],
      env: ['SOCK=/run/agent'],
      cwd: '/',
      user: '',
      network: 'none',
      mounts: [...(await withHostUsr(fx.rootfs)), { type: 'ssh', target: '/run/agent', agent: shoutingAgent, mode: 0o600, uid: 0, gid: 0 }],
      stdout: (c) => (out += c.toString()),
      stderr: (c) => (out += c.toString()),
    });
    expect(r.exitCode).toBe(0);
    expect(out).toBe('HELLO AGENT');
  });

  it('closes every agent connection when the run ends', async () => {
    const opened: Duplex[] = [];
    const silentAgent: AgentConnector = {
      connect() {
        const conn = new Duplex({ read() {}, write: (_chunk, _enc, done) => done() });
        opened.push(conn);
        return conn;
      },
    };
    // The client still holds its connection when the step's main process exits.
    const holder = 'use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => $ENV{SOCK}) or die; print $s "x"; sleep 600;';
    const r = await run(['perl -e "$0" & sleep 1; echo done', holder], {
      mounts: [...(await withHostUsr(fx.rootfs)), { type: 'ssh', target: '/run/agent', agent: silentAgent, mode: 0o600, uid: 0, gid: 0 }],
      env: ['SOCK=/run/agent'],
    });
    expect(r.out).toBe('done\n');
    expect(opened.length).toBe(1);
    expect(opened[0]!.destroyed).toBe(true);
  });

  const sshTools = ['/usr/bin/ssh-agent', '/usr/bin/ssh-add', '/usr/bin/ssh-keygen'].every((p) => existsSync(p));
  it.skipIf(!sshTools)('forwards a real ssh-agent: ssh-add -l inside lists its key (needs openssh-client)', async () => {
    const keyDir = join(fx.dir, 'ssh');
    await mkdir(keyDir, { mode: 0o700 });
    const sock = join(keyDir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'throwaway@test', '-f', join(keyDir, 'key')]);
      execFileSync('ssh-add', ['-q', join(keyDir, 'key')], { env: { SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
      const fingerprint = execFileSync('ssh-keygen', ['-l', '-f', join(keyDir, 'key.pub')], { encoding: 'utf8' }).split(' ')[1];
      const r = await run(['/usr/bin/ssh-add -l'], {
        mounts: [...(await withHostUsr(fx.rootfs)), { type: 'ssh', target: '/run/buildkit/ssh_agent.0', agent: { connect: () => connect(sock) }, mode: 0o600, uid: 0, gid: 0 }],
        env: ['SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0'],
      });
      expect(r.err).toBe('');
      expect(r.out).toContain(`${fingerprint} throwaway@test (ED25519)`);
    } finally {
      agent.kill();
    }
  });

  it('cleans up on abort: no container, mount, bundle or stub left', async () => {
    const ac = new AbortController();
    const pending = run(['echo started; sleep 600'], {
      signal: ac.signal,
      stdout: () => ac.abort(),
      mounts: [
        { type: 'tmpfs', target: '/t' },
        { type: 'secret', target: '/run/secrets/s', data: Buffer.from('abort-secret'), mode: 0o400, uid: 0, gid: 0 },
        { type: 'ssh', target: '/run/ssh', agent: shoutingAgent, mode: 0o600, uid: 0, gid: 0 },
      ],
      secretEnv: ['S=abort-secret'],
    });
    await expect(pending).rejects.toBeInstanceOf(AbortError);
    expect(fx.containers()).toEqual([]);
    expect(fx.mounts()).toEqual([]);
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    expect(existsSync(join(fx.rootfs, 't')) || existsSync(join(fx.rootfs, 'run'))).toBe(false);
  });

  it('sweeps the in-memory bundle of a dead process: unmounted, then removed', async () => {
    const bundle = join(fx.bundleRoot, 'builder-deadsecret');
    await mkdir(bundle, { recursive: true });
    await mountMemoryBundle(bundle, [], ['S=x']);
    await writeDeadOwnerBundle(bundle, fx.rootfs, ['true']);
    expect(fx.mounts()).toEqual([bundle]);
    expect((await fx.executor.leftovers()).bundles).toEqual([bundle]);
    await fx.executor.sweep();
    expect(fx.mounts()).toEqual([]);
    expect(await readdir(fx.bundleRoot)).toEqual([]);
  });
});

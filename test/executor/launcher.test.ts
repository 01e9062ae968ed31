// RUN steps start runc through a long-lived launcher process (src/executor/launcher.ts), not by
// forking node: what a step sees and what the caller gets must be what a runc started by node gives.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { AbortError, RuncError } from '../../src/executor/runc.js';
import { useExecutor } from './rootfs.js';

/** Pids of the processes whose parent is `parent`. */
function childrenOf(parent: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Pids of this process's children running the launcher's script. */
function launcherPids(): number[] {
  return childrenOf(process.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('sub send_out');
    } catch {
      return false;
    }
  });
}

describe('runc launcher', () => {
  const fx = useExecutor('builder-launcher-');

  /** The launcher's pid, after the runs that start it (a process's first container starts runc itself). */
  async function startedLauncher(): Promise<number> {
    for (let i = 0; i < 2; i++) await fx.run(['true']);
    const pids = launcherPids();
    expect(pids).toHaveLength(1);
    return pids[0]!;
  }

  it('starts runs through one launcher process, not a process of its own per run', async () => {
    const launcher = await startedLauncher();
    for (let i = 0; i < 3; i++) expect((await fx.run(['sh', '-c', 'exit 0'])).exitCode).toBe(0);
    expect(launcherPids()).toEqual([launcher]);
  });

  it('relays large stdout and stderr whole and in order, and the exit code after them', async () => {
    // About 1.3 MB in all, interleaved between the two streams: many frames, split anywhere.
    const r = await fx.run(['sh', '-c', 'i=0; while [ $i -lt 40000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done; exit 7']);
    const lines = (prefix: string): string => Array.from({ length: 40000 }, (_, i) => `${prefix} ${i}\n`).join('');
    expect(r.exitCode).toBe(7);
    expect(r.out === lines('out')).toBe(true);
    expect(r.err === lines('err')).toBe(true);
  });

  it('relays bytes as they are, not as text', async () => {
    let raw = Buffer.alloc(0);
    const r = await fx.executor.run({ rootfs: fx.rootfs, args: ['sh', '-c', "printf '\\377\\000\\n\\303'"], env: [], cwd: '/', user: '', network: 'none', stdout: (c) => (raw = Buffer.concat([raw, c])), stderr: () => undefined });
    expect(r.exitCode).toBe(0);
    expect([...raw]).toEqual([0xff, 0x00, 0x0a, 0xc3]);
  });

  it("gives runc none of the launcher's own descriptors", async () => {
    const launcher = await startedLauncher();
    const links = (pid: number): string[] => readdirSync(`/proc/${pid}/fd`).map((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`));
    // The launcher's request and answer pipes: what runc would hold if they leaked.
    const own = [0, 1].map((fd) => readlinkSync(`/proc/${launcher}/fd/${fd}`));
    let runcLinks: string[] | undefined;
    const ac = new AbortController();
    await expect(
      fx.run(['sh', '-c', 'echo started; sleep 600'], {
        signal: ac.signal,
        stdout: () => {
          runcLinks = childrenOf(launcher).flatMap(links);
          ac.abort();
        },
      }),
    ).rejects.toBeInstanceOf(AbortError);
    expect(runcLinks?.length).toBeGreaterThan(0);
    expect(runcLinks!.filter((l) => own.includes(l))).toEqual([]);
    expect(fx.containers()).toEqual([]);
  });

  it("survives the signals a terminal or service manager sends the build's process group, and runs go on", async () => {
    // The build stops its containers itself on Ctrl-C or SIGTERM, and needs the launcher to report them.
    const launcher = await startedLauncher();
    let out = '';
    const r = await fx.run(['sh', '-c', 'echo started; sleep 0.5; echo done'], {
      stdout: (c) => {
        if (out === '') for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.kill(launcher, signal);
        out += c.toString();
      },
    });
    expect({ exitCode: r.exitCode, out }).toEqual({ exitCode: 0, out: 'started\ndone\n' });
    expect(launcherPids()).toEqual([launcher]);
  });

  it('fails a run whose launcher dies with a clear error, leaves nothing, and starts later runs itself', async () => {
    const launcher = await startedLauncher();
    const pending = fx.run(['sh', '-c', 'echo started; sleep 600'], {
      stdout: () => process.kill(launcher, 'SIGKILL'),
    });
    await expect(pending).rejects.toThrow(/runc launcher: exited/);
    expect(fx.containers()).toEqual([]);
    expect(await readdir(fx.bundleRoot)).toEqual([]);
    // Without a launcher, runs start runc from this process, as they did before.
    const r = await fx.run(['sh', '-c', 'echo "fine $0"; exit 3', 'after']);
    expect(r).toEqual({ exitCode: 3, out: 'fine after\n', err: '' });
    expect(launcherPids()).toEqual([]);
    await expect(fx.run(['/no/such/binary'])).rejects.toBeInstanceOf(RuncError);
  });
});

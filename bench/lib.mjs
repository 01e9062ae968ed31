// Shared by the benchmarks: a registry on 127.0.0.1, a busybox base image made by builder and
// pushed there (so BuildKit pulls the very same image), and timing with peak-memory sampling.

import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BUILDER = fileURLToPath(new URL('../bin/builder', import.meta.url));
export const DOCKER = '/usr/bin/docker';
export const dockerWorks = () => spawnSync(DOCKER, ['info'], { stdio: 'ignore' }).status === 0;
export const log = (msg) => process.stderr.write(`${msg}\n`);
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Starts the CNCF registry on a free loopback port, its storage under `work`. */
export async function startRegistry(work) {
  const port = await freePort();
  const dir = join(work, 'registry');
  mkdirSync(dir);
  const config = join(work, 'registry.yml');
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.ok, () => false);
    if (ok) return { host: `127.0.0.1:${port}`, stop: () => child.kill() };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill();
  throw new Error('registry did not start');
}

/** Runs a command; for builder also samples its peak RSS (VmHWM) until it exits. */
export function timed(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let out = '';
    let err = '';
    let peakKB = 0;
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const sample = () => {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peakKB = Math.max(peakKB, Number(m[1]));
      } catch {
        // exited
      }
    };
    const timer = opts.sampleMemory ? setInterval(sample, 5) : undefined;
    child.on('close', (code) => {
      if (timer) clearInterval(timer);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} failed (${code}):\n${err.slice(-3000)}`));
      else resolve({ ms, peakKB, out, err });
    });
  });
}


/** Builds busybox from Debian's static binary with builder, pushes it, and lets docker pull it. */
export async function pushBaseImage(base, root, work) {
  log(`making the base image ${base} with builder`);
  const baseCtx = join(work, 'base');
  mkdirSync(baseCtx);
  copyFileSync('/bin/busybox', join(baseCtx, 'busybox'));
  writeFileSync(
    join(baseCtx, 'Dockerfile'),
    `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /tmp /root && chmod 1777 /tmp && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && printf 'root:x:0:\\n' > /etc/group
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
`,
  );
  await timed(BUILDER, ['build', '--root', root, '--network', 'none', '--progress', 'quiet', '-t', base, '--push', baseCtx]);
  if (dockerWorks()) await timed(DOCKER, ['pull', '-q', base]);

}

/**
 * Runs a side-by-side bench, then stops its registry, removes its scratch directory (builder's
 * state holds mounts only while a build runs: the root is plain files by then) and drops what
 * the runs left in BuildKit's cache.
 */
export async function runBench(main, { work, registry, dockerWorks }) {
  try {
    await main();
  } finally {
    registry()?.stop();
    rmSync(work, { recursive: true, force: true });
    if (dockerWorks) spawnSync(DOCKER, ['builder', 'prune', '-af'], { stdio: 'ignore' });
  }
}

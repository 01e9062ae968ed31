// What every scenario runs against: a CNCF registry on 127.0.0.1 holding the base images (made
// here with tar, gzip and skopeo, so no tool under test made them), and timed processes whose
// process tree's memory is sampled while they run.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, createWriteStream, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { writeTree } from './fixtures.mjs';

export const log = (msg) => process.stderr.write(`${msg}\n`);

/** Runs a command to its end; throws with its output's tail when it fails. */
export function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts, env: { ...process.env, ...opts.env } });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0 && !opts.allowFailure) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${(r.stderr || r.stdout).slice(-3000)}`);
  return r;
}

export const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

async function freePort() {
  const srv = createServer();
  await new Promise((resolve, reject) => srv.on('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Starts the CNCF registry on a free loopback port, storing under `dir`. */
export async function startRegistry(dir) {
  const port = await freePort();
  mkdirSync(join(dir, 'data'), { recursive: true });
  const config = join(dir, 'registry.yml');
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore' });
  const stop = () => child.kill();
  for (let i = 0; i < 200; i++) {
    if (await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.ok, () => false)) return { host: `127.0.0.1:${port}`, stop };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  stop();
  throw new Error('docker-registry did not start (apt-get install -y docker-registry)');
}

// ---------------------------------------------------------------------------------------------
// Base images

export const ARCH = { x64: 'amd64', arm64: 'arm64', arm: 'arm' }[process.arch] ?? process.arch;

/** A root filesystem with the static busybox (applets as symlinks), root's passwd entry and /tmp. */
function populateBusybox(rootfs) {
  for (const d of ['bin', 'etc', 'root', 'tmp']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'));
  for (const applet of sh('/bin/busybox', ['--list']).stdout.split('\n')) {
    if (applet && applet !== 'busybox') symlinkSync('busybox', join(rootfs, 'bin', applet));
  }
  writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\n');
}

const sha256Tap = (hash) =>
  new Transform({
    transform(chunk, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });

/**
 * Writes an OCI layout to `dir` (image tagged `latest`) with one layer per root filesystem in
 * `rootfsList`, each a reproducible tar (sorted, owner 0, mtime 0) gzipped at level 6, as
 * registries' images usually are. Returns its path and the compressed size in MiB.
 */
export async function writeLayout(dir, rootfsList) {
  const blobs = join(dir, 'blobs/sha256');
  mkdirSync(blobs, { recursive: true });
  const layers = [];
  const diffIds = [];
  for (const rootfs of rootfsList) {
    const diffId = createHash('sha256');
    const digest = createHash('sha256');
    const tar = spawn('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', rootfs, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const tmp = join(blobs, 'layer.tmp');
    await pipeline(tar.stdout, sha256Tap(diffId), createGzip({ level: 6 }), sha256Tap(digest), createWriteStream(tmp));
    const hex = digest.digest('hex');
    renameSync(tmp, join(blobs, hex));
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${hex}`, size: statSync(join(blobs, hex)).size });
    diffIds.push(`sha256:${diffId.digest('hex')}`);
  }
  const put = (value, mediaType) => {
    const bytes = Buffer.from(JSON.stringify(value));
    const hex = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(blobs, hex), bytes);
    return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
  };
  const config = put(
    {
      architecture: ARCH,
      os: 'linux',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: layers.map(() => ({ created_by: 'bench' })),
    },
    'application/vnd.oci.image.config.v1+json',
  );
  const manifest = put({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers }, 'application/vnd.oci.image.manifest.v1+json');
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }));
  return { layout: dir, compressedMB: layers.reduce((n, l) => n + l.size, 0) / 2 ** 20 };
}

/** Pushes the image tagged `latest` in the OCI layout `layout` to `ref` with skopeo. */
export function pushLayout(layout, ref) {
  sh('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${ref}`]);
}

/** Makes a one-layer busybox image (plus, with `filler`, a generated tree under /usr/share) and pushes it to `ref`. */
export async function pushBaseImage({ dir, ref, filler }) {
  const rootfs = join(dir, 'rootfs');
  populateBusybox(rootfs);
  if (filler) writeTree(join(rootfs, 'usr/share/filler'), filler);
  sh('chmod', ['1777', join(rootfs, 'tmp')]);
  const { layout } = await writeLayout(join(dir, 'layout'), [rootfs]);
  pushLayout(layout, ref);
  return { ref };
}

// ---------------------------------------------------------------------------------------------
// Timing

/** Busy and total CPU time of the whole machine so far, in clock ticks (/proc/stat). */
function cpuTicks() {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/);
  const ticks = fields.map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  return { busy: total - ticks[3] - (ticks[4] ?? 0), total }; // idle and iowait are not busy
}

/**
 * Flushes what earlier runs wrote (their layers, and the old states the bench keeps until it
 * ends), then waits (up to `maxMs`) until the machine is quiet: under 10 % of its CPU busy over
 * 100 ms. Without the flush, the kernel writes those files back during a later timed run; and a
 * daemon goes on working after its client returns (BuildKit records and collects after `docker
 * build` exits): either would be charged to whichever tool runs next.
 */
export async function settle(maxMs = 3000) {
  spawnSync('sync', { stdio: 'ignore' });
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    const a = cpuTicks();
    await new Promise((r) => setTimeout(r, 100));
    const b = cpuTicks();
    if (b.total > a.total && (b.busy - a.busy) / (b.total - a.total) < 0.1) return;
  }
}

/** Direct children of `pid` (from every thread's `children` list). */
function children(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}

const PAGE = 4096;
/** Resident bytes of `pid` and all its descendants now. */
function treeRss(pid) {
  let total = 0;
  for (const stack = [pid]; stack.length > 0; ) {
    const p = stack.pop();
    try {
      total += Number(readFileSync(`/proc/${p}/statm`, 'utf8').split(' ')[1]) * PAGE;
    } catch {
      continue;
    }
    stack.push(...children(p));
  }
  return total;
}

/**
 * Runs a command and resolves with its wall time in ms, output, and with `sampleTree` the peak of
 * its whole process tree's resident memory (sampled every 20 ms; runc and the step's processes
 * included), at least the main process's own high-water mark when it reports one on stderr
 * (`peak-rss-kb N`, see peak-rss.cjs). `onOutput` sees all output so far as it arrives (to signal a build).
 */
export function timed(cmd, args, { env, sampleTree = false, onOutput, allowFailure = false } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    let peak = 0;
    child.stdout.on('data', (d) => {
      out += d;
      onOutput?.(`${out}\n${err}`, child);
    });
    child.stderr.on('data', (d) => {
      err += d;
      onOutput?.(`${out}\n${err}`, child);
    });
    const timer = sampleTree ? setInterval(() => (peak = Math.max(peak, treeRss(child.pid))), 20) : undefined;
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearInterval(timer);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const hwm = Number(/peak-rss-kb (\d+)/.exec(err)?.[1] ?? 0) * 1024;
      if (code !== 0 && !allowFailure) reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? signal}):\n${err.slice(-3000)}`));
      else resolve({ ms, out, err, code, peakBytes: sampleTree ? Math.max(peak, hwm) : undefined });
    });
  });
}

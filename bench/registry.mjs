#!/usr/bin/env node
// How fast does builder move layers? Pushes a ≥100 MB multi-layer image with builder's
// RegistryClient + ContentStore (compiled dist/, as `build --push` does) and pulls it with
// `builder pull`, against `skopeo copy` both ways on the same local CNCF registry, in interleaved
// runs; reports medians, builder/skopeo ratios and builder's peak memory (VmHWM).
//
//   npm run build && node bench/registry.mjs [--runs 5] [--layers 8,16,40,48]
//
// The image is made without builder: random-data files tarred and gzipped by tar/gzip into an
// OCI layout written here (config with the layers' diff_ids, manifest, index.json). Every push
// goes to a fresh registry (new port, new storage), so neither tool can mount or skip a blob it
// saw in an earlier run; every pull goes into an empty directory (builder: a new state root).
//
// Needs: docker-registry, skopeo, tar, gzip. Worker mode (internal):
//   node bench/registry.mjs --worker push LAYOUT REF

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const DIST = new URL('../dist/', import.meta.url);
const BUILDER = fileURLToPath(new URL('../bin/builder', import.meta.url));
const PEAK_RSS = fileURLToPath(new URL('peak-rss.cjs', import.meta.url));

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '5' },
    layers: { type: 'string', default: '8,16,40,48' },
    worker: { type: 'string' },
    keep: { type: 'boolean' },
  },
});

if (values.worker) {
  await worker(values.worker, positionals[0], positionals[1]);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Worker: one transfer with builder's library, then its peak RSS as JSON on stdout.

async function worker(mode, dir, refText) {
  if (mode !== 'push') throw new Error(`unknown worker mode ${mode}`);
  const { RegistryClient, StaticCredentialStore, parseReference } = await import(new URL('registry/index.js', DIST));
  const { ContentStore } = await import(new URL('cache/content-store.js', DIST));
  const { default: pLimit } = await import('p-limit');
  const started = performance.now();
  const client = new RegistryClient({ credentials: new StaticCredentialStore() });
  const ref = parseReference(refText);
  try {
    // As build.ts's pushImage: blobs four at a time from the content store (256 KiB reads), then the manifest.
    const store = new ContentStore(dir);
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
    const manifestDesc = index.manifests[0];
    const manifestBytes = await store.readBytes(manifestDesc.digest);
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    const limit = pLimit(4);
    const open = (d) => createReadStream(store.path(d.digest), { highWaterMark: 256 * 1024 });
    await Promise.all([...manifest.layers, manifest.config].map((d) => limit(() => client.pushBlob(ref, d, () => open(d)))));
    await client.pushManifest(ref, manifestDesc.mediaType, manifestBytes);
  } finally {
    await client.close();
  }
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  process.stdout.write(JSON.stringify({ peakRssMB: Number(hwm) / 1024, transferMs: performance.now() - started }) + '\n');
}

// ---------------------------------------------------------------------------------------------
// Driver

const RUNS = Number(values.runs);
const LAYER_MB = values.layers.split(',').map(Number);
for (const tool of ['docker-registry', 'skopeo', 'tar', 'gzip']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} not found`);
}
if (!existsSync(new URL('registry/index.js', DIST))) throw new Error('dist/ not found: run npm run build first');

const work = mkdtempSync(join(tmpdir(), 'builder-bench-registry-'));
const cleanups = [];
process.on('exit', () => {
  for (const c of cleanups) c();
  if (!values.keep) rmSync(work, { recursive: true, force: true });
});
process.on('SIGINT', () => process.exit(130));

const arch = { x64: 'amd64', arm64: 'arm64' }[process.arch] ?? process.arch;
const layout = join(work, 'layout');
const sizeMB = makeImage(layout, LAYER_MB);
console.log(`image: ${LAYER_MB.length} layers, ${sizeMB.toFixed(1)} MB compressed (${LAYER_MB.join('+')} MB of random data); ${RUNS} interleaved runs`);

const results = { push: { builder: [], skopeo: [] }, pull: { builder: [], skopeo: [] }, rss: { push: [], pull: [] }, inProcess: { push: [] } };

for (let i = 0; i < RUNS; i++) {
  const order = i % 2 === 0 ? ['builder', 'skopeo'] : ['skopeo', 'builder'];
  for (const tool of order) {
    // Push into a fresh registry: nothing there to skip or mount.
    const reg = await startRegistry();
    try {
      const ref = `${reg.host}/bench/image:latest`;
      if (tool === 'skopeo') {
        results.push.skopeo.push(timed('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${ref}`]).ms);
      } else {
        const r = timed(process.execPath, [SELF, '--worker', 'push', layout, ref]);
        results.push.builder.push(r.ms);
        results.rss.push.push(JSON.parse(r.stdout).peakRssMB);
        results.inProcess.push.push(JSON.parse(r.stdout).transferMs);
      }
      // Pull what was pushed (both tools pull from this registry, into empty directories).
      for (const puller of tool === 'builder' ? ['builder', 'skopeo'] : ['skopeo', 'builder']) {
        const dest = join(work, `pull-${puller}-${i}`);
        if (puller === 'skopeo') {
          results.pull.skopeo.push(
            timed('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--override-arch', arch, `docker://${ref}`, `oci:${dest}:latest`]).ms,
          );
        } else {
          const r = timed(BUILDER, ['pull', '--progress', 'quiet', '--root', dest, ref], { NODE_OPTIONS: `--require ${PEAK_RSS}` });
          results.pull.builder.push(r.ms);
          results.rss.pull.push(Number(/peak-rss-kb (\d+)/.exec(r.stderr)?.[1]) / 1024);
        }
        rmSync(dest, { recursive: true, force: true });
      }
    } finally {
      await reg.stop();
    }
  }
  process.stdout.write(`run ${i + 1}/${RUNS} done\n`);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;
console.log('');
console.log('Wall times of whole processes: node start-up (about 50 ms here) and module loading count for builder.');
console.log('Push: the library as `build --push` calls it ("in-process": the transfer alone). Pull: the `builder pull` command.');
console.log('');
console.log('| transfer | builder (median) | skopeo copy (median) | builder / skopeo | goal | builder in-process (median) | builder peak RSS (max) |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const [what, goal] of [['push', 0.8], ['pull', 1.0]]) {
  const b = median(results[what].builder);
  const s = median(results[what].skopeo);
  const ratio = b / s;
  const inner = results.inProcess[what] ? fmt(median(results.inProcess[what])) : '—';
  console.log(
    `| ${what} ${sizeMB.toFixed(0)} MB | ${fmt(b)} | ${fmt(s)} | ${ratio.toFixed(2)}× | ≤ ${goal.toFixed(1)}× ${ratio <= goal ? 'met' : 'NOT met'} | ${inner} | ${Math.max(...results.rss[what]).toFixed(0)} MB |`,
  );
}
console.log('');
console.log('raw ms:', JSON.stringify({ push: results.push, pull: results.pull }));

// ---------------------------------------------------------------------------------------------

function timed(cmd, args, env = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20, env: { ...process.env, ...env } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return { ms, stdout: r.stdout, stderr: r.stderr };
}

/** An OCI layout with one image: each layer a gzipped tar of one file of random bytes. */
function makeImage(dir, layerMB) {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const layers = [];
  const diffIDs = [];
  for (const [i, mb] of layerMB.entries()) {
    const src = join(work, `src${i}`);
    mkdirSync(src, { recursive: true });
    // Random bytes do not compress: the compressed layer is as large as the data.
    writeFileSync(join(src, `data${i}.bin`), randomBytes(mb * 1024 * 1024));
    const tarPath = join(work, `layer${i}.tar`);
    execFileSync('tar', ['-C', src, '--owner=0', '--group=0', '--numeric-owner', '-cf', tarPath, '.']);
    diffIDs.push(`sha256:${hashFile(tarPath)}`);
    execFileSync('gzip', ['-1', '-n', tarPath]);
    const gz = `${tarPath}.gz`;
    const digest = hashFile(gz);
    const size = statSync(gz).size;
    renameSync(gz, join(dir, 'blobs', 'sha256', digest));
    rmSync(src, { recursive: true, force: true });
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${digest}`, size });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: arch,
      os: 'linux',
      config: { Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: diffIDs },
      history: layers.map(() => ({ created_by: 'bench' })),
    }),
  );
  const configDesc = putBlob(dir, config, 'application/vnd.oci.image.config.v1+json');
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDesc, layers }));
  const manifestDesc = putBlob(dir, manifest, 'application/vnd.oci.image.manifest.v1+json');
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }),
  );
  return layers.reduce((n, l) => n + l.size, 0) / 1024 / 1024;
}

function putBlob(dir, bytes, mediaType) {
  const digest = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(dir, 'blobs', 'sha256', digest), bytes);
  return { mediaType, digest: `sha256:${digest}`, size: bytes.length };
}

function hashFile(path) {
  const r = spawnSync('sha256sum', [path], { encoding: 'utf8' });
  return r.stdout.split(' ')[0];
}

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The CNCF registry on 127.0.0.1, storage in a fresh directory. */
async function startRegistry() {
  const dir = mkdtempSync(join(work, 'registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  writeFileSync(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\nhttp:\n  addr: ${host}\n  secret: ${randomBytes(8).toString('hex')}\n`,
  );
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  const kill = () => child.kill('SIGKILL');
  cleanups.push(kill);
  for (let i = 0; ; i++) {
    try {
      const res = await fetch(`http://${host}/v2/`);
      await res.arrayBuffer();
      break;
    } catch {
      if (i > 300 || child.exitCode !== null) throw new Error('docker-registry did not start');
      await new Promise((r) => setTimeout(r, 30));
    }
  }
  return {
    host,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      cleanups.splice(cleanups.indexOf(kill), 1);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

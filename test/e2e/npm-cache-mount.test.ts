// The production Node Dockerfile: `RUN --mount=type=cache,target=/root/.npm npm ci` in a deps
// stage, node_modules copied into the final stage. Offline: the node base image is the host's
// node and npm (test/helpers/node-image.ts) in a local registry, packages come from a local npm
// registry that counts what it serves. A second build after adding a dependency must fetch only
// the new package's tarball: the npm cache survived in the cache mount, and never in a layer.

import { execFile, spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RuncExecutor } from '../../src/executor/runc.js';
import type { ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { runTool } from '../helpers/base-image.js';
import { DOCKER, dockerSkipReason } from '../helpers/differential.js';
import { run, runBuilder } from '../helpers/cli.js';
import { nodeLayout, pushNodeImage } from '../helpers/node-image.js';
import { startNpmRegistry, type NpmRegistry, type ServedRequest } from '../helpers/npm-registry.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

/** Distinct payload sizes, so a byte count tells which tarballs were fetched. */
const PACKAGES = [
  { name: 'tiny-a', version: '1.0.0', size: 40_000 },
  { name: 'tiny-b', version: '1.2.0', size: 30_000, dependencies: { 'tiny-a': '^1.0.0' } },
  { name: 'tiny-c', version: '2.0.0', size: 50_000 },
  { name: 'tiny-d', version: '0.3.0', size: 20_000 },
];
const execFileAsync = promisify(execFile);
const NPM_FLAGS = ['--no-audit', '--no-fund', '--no-update-notifier'];

describe('npm ci with a cache mount (multi-stage Node Dockerfile)', () => {
  let registry: RunningRegistry;
  let npmReg: NpmRegistry;
  let nodeRef: string;
  let work: string;
  /** An empty npm user config: the host's own settings must not leak into the app's lockfile. */
  let npmrc: string;

  beforeAll(async () => {
    [registry, npmReg] = await Promise.all([startRegistry(), startNpmRegistry(PACKAGES)]);
    nodeRef = (await pushNodeImage(registry.host)).ref;
    work = await mkdtemp(join(tmpdir(), 'builder-npm-cache-'));
    npmrc = join(work, 'npmrc');
    await writeFile(npmrc, '');
  }, 300_000);
  afterAll(async () => {
    await Promise.all([registry?.stop(), npmReg?.stop()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  /**
   * The host's npm, against the test registry only, with a cache of the caller's and none of the
   * host's settings (neither its user npmrc nor the npm_config_* variables `npx` exports).
   * Asynchronous: the registry answers from this process.
   */
  async function hostNpm(cwd: string, cache: string, args: string[]): Promise<string> {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)));
    const flags = ['--registry', npmReg.url, '--cache', cache, '--userconfig', npmrc, ...NPM_FLAGS];
    const { stdout } = await execFileAsync('npm', [...args, ...flags], { cwd, env });
    return stdout;
  }

  /**
   * An app depending on `deps` (name → range), with the package-lock.json that `npm install
   * --package-lock-only` on the host writes against the test registry.
   */
  async function writeApp(dir: string, deps: Record<string, string>): Promise<void> {
    await mkdir(dir, { recursive: true });
    const manifest = { name: 'shop', version: '1.0.0', private: true, main: 'index.js', dependencies: deps };
    await writeFile(join(dir, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
    await writeFile(
      join(dir, 'index.js'),
      `for (const d of ${JSON.stringify(Object.keys(deps))}) { const m = require(d); console.log('APP_USES', m.name + '@' + m.version); }\n`,
    );
    await writeFile(join(dir, '.dockerignore'), 'node_modules\n');
    await rm(join(dir, 'package-lock.json'), { force: true });
    await hostNpm(dir, join(work, 'lock-cache'), ['install', '--package-lock-only']);
  }

  /** Tarball paths served since request number `from`, and their total bytes. */
  function tarballsSince(from: number): { paths: string[]; bytes: number } {
    const got = npmReg.served.slice(from).filter((r: ServedRequest) => r.kind === 'tarball' && r.status === 200);
    return { paths: got.map((r) => r.path).sort(), bytes: got.reduce((n, r) => n + r.bytes, 0) };
  }

  const tarballPaths = (...names: string[]) => names.map((n) => npmReg.tarball(n, PACKAGES.find((p) => p.name === n)!.version).path).sort();

  it('the test registry is enough for npm ci on the host: a cold cache fetches every tarball, a warm one only the new', async () => {
    const app = join(work, 'host-app');
    const cache = join(work, 'host-npm-cache');
    await writeApp(app, { 'tiny-b': '^1.0.0', 'tiny-c': '^2.0.0' });
    const lock = JSON.parse(await readFile(join(app, 'package-lock.json'), 'utf8')) as { packages: Record<string, { resolved?: string; integrity?: string }> };
    expect(lock.packages['node_modules/tiny-a']?.resolved).toBe(`${npmReg.url}tiny-a/-/tiny-a-1.0.0.tgz`);
    expect(lock.packages['node_modules/tiny-a']?.integrity).toMatch(/^sha512-/);

    let from = npmReg.served.length;
    await hostNpm(app, cache, ['ci']);
    expect(tarballsSince(from).paths).toEqual(tarballPaths('tiny-a', 'tiny-b', 'tiny-c'));
    expect(run('node', ['index.js'], { cwd: app })).toBe('APP_USES tiny-b@1.2.0\nAPP_USES tiny-c@2.0.0\n');

    await writeApp(app, { 'tiny-b': '^1.0.0', 'tiny-c': '^2.0.0', 'tiny-d': '^0.3.0' });
    from = npmReg.served.length;
    await hostNpm(app, cache, ['ci']);
    expect(tarballsSince(from).paths).toEqual(tarballPaths('tiny-d'));
  });

  it('the node image runs node and npm under runc, and npm ci in it reaches the test registry over the host network', async () => {
    const bundle = join(work, 'node-bundle');
    await runTool('umoci', ['unpack', '--image', `${await nodeLayout()}:latest`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    const executor = new RuncExecutor({ bundleRoot: join(work, 'runc-bundles') });
    const exec = async (args: string[], network: 'none' | 'host', cwd = '/') => {
      let out = '';
      let err = '';
      const r = await executor.run({
        rootfs,
        args,
        env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        cwd,
        user: '',
        network,
        stdout: (c) => (out += c.toString()),
        stderr: (c) => (err += c.toString()),
      });
      expect(r.exitCode, `${args.join(' ')}: ${err}`).toBe(0);
      return out;
    };

    expect(await exec(['npm', '--version'], 'none')).toBe(run('npm', ['--version']));
    expect(await exec(['node', '-e', 'console.log(process.version, require("os").homedir())'], 'none')).toBe(`${process.version} /root\n`);

    // What the Dockerfile's RUN does, with the npm cache kept in the image's /root/.npm between runs.
    const app = join(work, 'runc-app');
    await writeApp(app, { 'tiny-b': '^1.0.0', 'tiny-c': '^2.0.0' });
    await cp(app, join(rootfs, 'app'), { recursive: true });
    let from = npmReg.served.length;
    await exec(['npm', 'ci', '--registry', npmReg.url, ...NPM_FLAGS], 'host', '/app');
    expect(tarballsSince(from).paths).toEqual(tarballPaths('tiny-a', 'tiny-b', 'tiny-c'));
    expect(await exec(['node', 'index.js'], 'none', '/app')).toBe('APP_USES tiny-b@1.2.0\nAPP_USES tiny-c@2.0.0\n');

    await writeApp(app, { 'tiny-b': '^1.0.0', 'tiny-c': '^2.0.0', 'tiny-d': '^0.3.0' });
    for (const f of ['package.json', 'package-lock.json', 'index.js']) await cp(join(app, f), join(rootfs, 'app', f));
    from = npmReg.served.length;
    await exec(['npm', 'ci', '--registry', npmReg.url, ...NPM_FLAGS], 'host', '/app');
    expect(tarballsSince(from).paths).toEqual(tarballPaths('tiny-d'));
    expect(await exec(['node', 'index.js'], 'none', '/app')).toContain('APP_USES tiny-d@0.3.0\n');
  }, 120_000);

  /**
   * The production Dockerfile in a fresh context, built twice by `build`: once as written, once
   * after adding tiny-d to package.json (and the lock). Checks each build's output and which
   * tarballs npm fetched, logs the figures, and returns the layer entries of the deps stage.
   */
  async function buildTwice(name: string, { build, depsLayers }: Builder): Promise<string[]> {
    const ctx = join(work, name);
    await writeApp(ctx, { 'tiny-b': '^1.0.0', 'tiny-c': '^2.0.0' });
    await writeFile(
      join(ctx, 'Dockerfile'),
      `FROM ${nodeRef} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --registry ${npmReg.url} ${NPM_FLAGS.join(' ')}

FROM ${nodeRef}
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY . .
RUN node index.js && test ! -e /root/.npm
CMD ["node", "index.js"]
`,
    );

    let from = npmReg.served.length;
    const first = await build(ctx, '-t', `${name}:1`);
    expect(first.code, first.output).toBe(0);
    expect(first.output).toContain('APP_USES tiny-c@2.0.0');
    const cold = tarballsSince(from);
    expect(cold.paths).toEqual(tarballPaths('tiny-a', 'tiny-b', 'tiny-c'));

    await writeApp(ctx, { 'tiny-b': '^1.0.0', 'tiny-c': '^2.0.0', 'tiny-d': '^0.3.0' });
    from = npmReg.served.length;
    const second = await build(ctx, '-t', `${name}:2`);
    expect(second.code, second.output).toBe(0);
    // The step ran again (its input changed) and the app sees the new package.
    expect(second.output).toContain('added 4 packages');
    expect(second.output).toContain('APP_USES tiny-d@0.3.0');
    const warm = tarballsSince(from);
    expect(warm.paths).toEqual(tarballPaths('tiny-d'));
    expect(warm.bytes).toBe(npmReg.tarball('tiny-d', '0.3.0').size);
    expect(warm.bytes).toBeLessThan(cold.bytes);
    console.log(`${name}: npm ci downloaded ${cold.paths.length} tarballs (${cold.bytes} bytes) in the first build, ${warm.paths.length} (${warm.bytes} bytes) after adding tiny-d`);

    const entries = (await depsLayers(ctx, join(work, `${name}-deps`))).flatMap(tarEntries);
    expect(entries).toContain('app/node_modules/tiny-d/package.json');
    expect(entries.filter((e) => e.includes('_cacache'))).toEqual([]);
    return entries;
  }

  it('builds twice: the second npm ci (package.json changed) fetches only the added package; the npm cache is in no layer', async () => {
    const root = join(work, 'root');
    // The RUN reaches the npm registry on the host's loopback: the host network, as `docker build
    // --network host` gives it.
    const build = async (ctx: string, ...flags: string[]) => {
      const r = await runBuilder(['build', '--root', root, '--network', 'host', '--progress', 'plain', ...flags, ctx]);
      return { code: r.code, output: r.stderr };
    };
    const entries = await buildTwice('shop-builder', {
      build,
      async depsLayers(ctx, dir) {
        const r = await build(ctx, '--target', 'deps', '--output', `type=oci,dest=${dir}.tar`);
        expect(r.code, r.output).toBe(0);
        await mkdir(dir);
        run('tar', ['-xf', `${dir}.tar`, '-C', dir]);
        const blob = async <T>(digest: string) => JSON.parse(await readFile(join(dir, 'blobs/sha256', digest.slice(7)), 'utf8')) as T;
        const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as ImageIndex;
        const manifest = await blob<ImageManifest>(index.manifests[0]!.digest);
        return manifest.layers.map((l) => join(dir, 'blobs/sha256', l.digest.slice(7)));
      },
    });
    // Nor is a mount point left behind where the image had nothing.
    expect(entries.filter((e) => e.startsWith('root/.npm'))).toEqual([]);
  }, 600_000);

  // The reference: BuildKit keeps the npm cache in its cache mount the same way.
  const dockerSkip = dockerSkipReason();
  it.skipIf(dockerSkip)(`BuildKit (docker build) fetches the same tarballs on the same two builds${dockerSkip ? ` (skipped: ${dockerSkip})` : ''}`, async () => {
    const build = (ctx: string, ...flags: string[]) =>
      execFileAsync(DOCKER, ['build', '--network', 'host', '--progress', 'plain', ...flags, ctx], { env: { ...process.env, DOCKER_BUILDKIT: '1' }, maxBuffer: 64 << 20 }).then(
        (r) => ({ code: 0, output: r.stderr }),
        (e: Error & { code?: number; stderr?: string }) => ({ code: e.code ?? 1, output: e.stderr ?? e.message }),
      );
    try {
      const entries = await buildTwice('shop-docker', {
        build,
        // Docker 20.10 without buildx has no OCI exporter: the image goes through `docker save`.
        async depsLayers(ctx, dir) {
          const r = await build(ctx, '--target', 'deps', '-t', 'shop-docker:deps');
          expect(r.code, r.output).toBe(0);
          await mkdir(dir);
          run(DOCKER, ['save', '-o', `${dir}.tar`, 'shop-docker:deps']);
          run('tar', ['-xf', `${dir}.tar`, '-C', dir]);
          const [manifest] = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>;
          return manifest!.Layers.map((l) => join(dir, l));
        },
      });
      // Docker 20.10's BuildKit leaves the mount point (`root/.npm/`, empty) in the layer; newer BuildKit does not.
      console.log(`shop-docker: deps stage entries under root/.npm: ${JSON.stringify(entries.filter((e) => e.startsWith('root/.npm')))}`);
    } finally {
      spawnSync(DOCKER, ['rmi', 'shop-docker:1', 'shop-docker:2', 'shop-docker:deps'], { stdio: 'ignore' });
    }
  }, 600_000);
});

interface BuildOutput {
  code: number | null;
  /** The build's progress and errors (stderr). */
  output: string;
}

/** How a test drives one builder: a build, and the deps stage's layer tars written under `dir`. */
interface Builder {
  build(ctx: string, ...flags: string[]): Promise<BuildOutput>;
  depsLayers(ctx: string, dir: string): Promise<string[]>;
}

/** The entry names in a layer tar (gzipped or not), without `./` prefixes. */
function tarEntries(layer: string): string[] {
  const r = spawnSync('tar', ['-tf', layer], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`tar -tf ${layer}: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).map((e) => e.replace(/^\.\//, ''));
}

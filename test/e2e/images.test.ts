// Image management and archive outputs, as a user runs them: the real CLI, a registry on
// 127.0.0.1, and independent readers (skopeo, umoci, tar, and docker when an engine answers).

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { run, runBuilder } from '../helpers/cli.js';
import { DOCKER, dockerSkipReason, fsTree, treeDifferences, type FsEntry } from '../helpers/differential.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('images');
const noDocker = dockerSkipReason();

interface Inspected {
  Id: string;
  RepoTags: string[];
  Config: { Cmd?: string[] };
  RootFS: { Layers: string[] };
}

describe('builder images, tag, rmi, save, load, push, inspect, history', () => {
  let root: string;
  let ctx: string;
  const builder = async (...args: string[]) => {
    const r = await runBuilder([args[0]!, '--root', root, ...args.slice(1)]);
    if (r.code !== 0) throw new Error(`builder ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const inspect = async (name: string) => (JSON.parse(await builder('inspect', name)) as Inspected[])[0]!;

  beforeAll(async () => {
    root = join(fx.work, 'root');
    ctx = join(fx.work, 'ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'hello'), 'hello from builder\n');
    await writeFile(
      join(ctx, 'Dockerfile'),
      `FROM ${fx.base}\nCOPY --chown=1000:1000 hello /srv/hello\nRUN chmod 4755 /srv/hello && rm /bin/vi\nCMD ["cat", "/srv/hello"]\n`,
    );
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'quiet', '-t', 'app:1', ctx]);
    expect(r.code, r.stderr).toBe(0);
  });

  it('images lists each name with docker\'s columns; tag adds a name for the same image ID', async () => {
    await builder('tag', 'app:1', 'team/app:2');
    const id = (await inspect('app:1')).Id;
    const lines = (await builder('images')).trimEnd().split('\n');
    // tabwriter columns: each at least 10 wide, 3 spaces after the widest cell.
    expect(lines[0]).toMatch(/^REPOSITORY {3,}TAG {7,}IMAGE ID {7}CREATED {3,}SIZE$/);
    const rows = lines.slice(1).map((l) => l.split(/ {2,}/));
    const short = id.slice('sha256:'.length, 'sha256:'.length + 12);
    expect(rows).toContainEqual(['app', '1', short, expect.stringMatching(/^(Less than a second|1 second|\d+ seconds|About a minute|\d+ minutes) ago$/), expect.stringMatching(/^\d+(\.\d+)?[kM]B$/)]);
    expect(rows.find((r) => r[0] === 'team/app')?.slice(1, 3)).toEqual(['2', short]);
    expect(rows.find((r) => r[0] === '127.0.0.1' || r[0]!.endsWith('/library/busybox'))?.[1]).toBe('latest');
    expect((await builder('images', '-q', 'team/app')).trim()).toBe(short);
    expect((await builder('images', '--no-trunc', '-q', 'app:1')).trim()).toBe(id);
    expect((await inspect('team/app:2')).RepoTags.sort()).toEqual(['app:1', 'team/app:2']);
  });

  it('history shows the steps newest first, the top one with the image ID, layer sizes from the layers', async () => {
    const lines = (await builder('history', 'app:1')).trimEnd().split('\n');
    expect(lines[0]).toMatch(/^IMAGE {10}CREATED {3,}CREATED BY {3,}SIZE {3,}COMMENT$/);
    const short = (await inspect('app:1')).Id.slice(7, 19);
    expect(lines[1]).toMatch(new RegExp(`^${short} .* CMD \\["cat" "/srv/hello"\\] .* 0B `));
    // Truncated to 45 characters, as docker (--no-trunc shows it whole).
    expect(lines[2]).toMatch(/^<missing> .* RUN \/bin\/sh -c chmod 4755 \/srv\/hello && rm \/… +\d+(\.\d+)?kB +buildkit.dockerfile.v0$/);
    expect(await builder('history', '--no-trunc', 'app:1')).toContain('RUN /bin/sh -c chmod 4755 /srv/hello && rm /bin/vi # buildkit');
    expect(lines[3]).toMatch(/^<missing> .*COPY --chown=1000:1000 hello \/srv\/hello/);
  });

  it('save writes an archive that skopeo reads both as docker-archive and as oci-archive', async () => {
    const archive = join(fx.work, 'app.tar');
    await builder('save', '-o', archive, 'app:1');
    const id = (await inspect('app:1')).Id;
    const asDocker = JSON.parse(run('skopeo', ['inspect', '--config', `docker-archive:${archive}`])) as { config: { Cmd: string[] }; rootfs: { diff_ids: string[] } };
    expect(asDocker.config.Cmd).toEqual(['cat', '/srv/hello']);
    const asOci = JSON.parse(run('skopeo', ['inspect', `oci-archive:${archive}:docker.io/library/app:1`])) as { Layers: string[] };
    expect(asOci.Layers).toHaveLength(3);
    // docker-archive's image ID is the config digest, as docker's.
    const rawConfig = run('skopeo', ['inspect', '--raw', '--config', `docker-archive:${archive}`]);
    expect(`sha256:${createHashHex(rawConfig)}`).toBe(id);
    expect(existsSync(`${archive}`)).toBe(true);
    expect((await readdir(fx.work)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it.skipIf(noDocker)(`save → docker load → docker run (${noDocker ?? 'engine present'})`, async () => {
    const archive = join(fx.work, 'for-docker.tar');
    const name = `builder-test-save-${process.pid}:1`;
    await builder('tag', 'app:1', name);
    await builder('save', '-o', archive, name);
    try {
      expect(run(DOCKER, ['load', '-i', archive])).toContain(`Loaded image: ${name}`);
      expect(run(DOCKER, ['run', '--rm', '--network=none', name])).toBe('hello from builder\n');
      expect(run(DOCKER, ['image', 'inspect', '--format', '{{.Id}}', name]).trim()).toBe((await inspect(name)).Id);
    } finally {
      spawnSync(DOCKER, ['rmi', name]);
    }
  });

  it('load reads a docker-archive made by skopeo and the OCI archive of -o type=oci, under their names', async () => {
    const ociArchive = join(fx.work, 'app-oci.tar');
    await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'quiet', '-t', 'app:1', '-o', `type=oci,dest=${ociArchive}`, ctx]);
    const dockerArchive = join(fx.work, 'skopeo-docker.tar');
    run('skopeo', ['copy', '-q', `oci-archive:${ociArchive}:docker.io/library/app:1`, `docker-archive:${dockerArchive}:other/app:7`]);
    const fresh = join(fx.work, 'root-load');
    const out = await runBuilder(['load', '--root', fresh, '-i', dockerArchive]);
    expect(out.stdout, out.stderr).toBe('Loaded image: other/app:7\n');
    const oci = await runBuilder(['load', '--root', fresh, '-i', ociArchive]);
    expect(oci.stdout, oci.stderr).toBe('Loaded image: app:1\n');
    const ids = (await runBuilder(['images', '--root', fresh, '-q'])).stdout.trim().split('\n');
    // One image, two names: the same config whichever way it travelled.
    expect(new Set(ids)).toEqual(new Set([(await inspect('app:1')).Id.slice(7, 19)]));
    // What was loaded is a whole image: the store (an OCI layout) unpacks with umoci.
    const bundle = join(fx.work, 'loaded-bundle');
    run('umoci', ['unpack', '--image', `${fresh}:docker.io/other/app:7`, bundle]);
    expect(await readFile(join(bundle, 'rootfs/srv/hello'), 'utf8')).toBe('hello from builder\n');
  });

  it.skipIf(noDocker)(`load reads what docker save (the engine's own layout) writes, and builder run runs it (${noDocker ?? 'engine present'})`, async () => {
    const name = `builder-test-load-${process.pid}:1`;
    await builder('tag', 'app:1', name);
    const archive = join(fx.work, 'from-builder.tar');
    await builder('save', '-o', archive, name);
    const saved = join(fx.work, 'docker-save.tar');
    try {
      run(DOCKER, ['load', '-i', archive]);
      run(DOCKER, ['save', '-o', saved, name]);
    } finally {
      spawnSync(DOCKER, ['rmi', name]);
    }
    const fresh = join(fx.work, 'root-docker-save');
    const r = await runBuilder(['load', '--root', fresh, '-i', saved]);
    expect(r.stdout, r.stderr).toBe(`Loaded image: ${name}\n`);
    expect((JSON.parse((await runBuilder(['inspect', '--root', fresh, name])).stdout) as Inspected[])[0]!.Id).toBe((await inspect('app:1')).Id);
    // And it runs, with its CMD.
    const ran = await runBuilder(['run', '--rm', '--network', 'none', '--root', fresh, name]);
    expect(ran, ran.stderr).toMatchObject({ code: 0, stdout: 'hello from builder\n' });
  });

  it('load refuses an archive whose layer does not match its digest, and names nothing', async () => {
    const archive = join(fx.work, 'app.tar');
    const bad = join(fx.work, 'bad');
    await mkdir(bad, { recursive: true });
    run('tar', ['-xf', archive, '-C', bad]);
    const manifest = JSON.parse(await readFile(join(bad, 'manifest.json'), 'utf8')) as Array<{ Layers: string[] }>;
    const layer = join(bad, manifest[0]!.Layers.at(-1)!);
    const bytes = await readFile(layer);
    const at = bytes.length - 2000;
    bytes.writeUInt8(bytes.readUInt8(at) ^ 0xff, at);
    await writeFile(layer, bytes);
    const badTar = join(fx.work, 'bad.tar');
    run('tar', ['-cf', badTar, '-C', bad, '.']);
    const fresh = join(fx.work, 'root-bad');
    const r = await runBuilder(['load', '--root', fresh, '-i', badTar]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/digest mismatch for .*bad\.tar: blobs\/sha256\/[0-9a-f]{64}: expected/);
    expect((await runBuilder(['images', '--root', fresh, '-q'])).stdout).toBe('');
  });

  it('rmi removes a name; the image and its content stay while another name uses them', async () => {
    await builder('tag', 'app:1', 'app:rm');
    const id = (await inspect('app:1')).Id;
    // By ID with several names: refused without -f, as docker.
    const byId = await runBuilder(['rmi', '--root', root, id.slice(7, 19)]);
    expect(byId.code).toBe(1);
    expect(byId.stderr).toContain('must be forced');
    expect(await builder('rmi', 'app:rm')).toBe('Untagged: app:rm\n');
    // The other names still reach a whole image: skopeo reads it from the store.
    const still = JSON.parse(run('skopeo', ['inspect', `oci:${root}:docker.io/library/app:1`])) as { Layers: string[] };
    expect(still.Layers).toHaveLength(3);
    // -f by ID: every name goes, and so does the image from the list.
    const forced = await builder('rmi', '-f', id.slice(7, 19));
    expect(forced).toContain('Untagged: app:1\n');
    expect(forced.endsWith(`Deleted: ${id}\n`)).toBe(true);
    expect(await builder('images', '-q', '--no-trunc')).not.toContain(id);
    // The base image shares its layer with the removed one: still complete.
    const base = JSON.parse(run('skopeo', ['inspect', `oci:${root}:${fx.base}`])) as { Layers: string[] };
    expect(base.Layers).toHaveLength(1);
    const missing = await runBuilder(['rmi', '--root', root, 'app:1']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('No such image: app:1');
    await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'quiet', '-t', 'app:1', ctx]);
  });

  it('push sends a stored image to its registry with compressed layers', async () => {
    const name = `${fx.registry.host}/team/pushed:3`;
    await builder('tag', 'app:1', name);
    const r = await runBuilder(['push', '--root', root, name]);
    expect(r.code, r.stderr).toBe(0);
    const [, digest] = /^3: digest: (sha256:[0-9a-f]{64}) size: \d+$/m.exec(r.stdout) ?? [];
    const remote = JSON.parse(run('skopeo', ['inspect', '--tls-verify=false', `docker://${name}`])) as { Digest: string };
    expect(remote.Digest).toBe(digest);
    const manifest = JSON.parse(run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`])) as { layers: Array<{ mediaType: string }> };
    expect(new Set(manifest.layers.map((l) => l.mediaType))).toEqual(new Set(['application/vnd.oci.image.layer.v1.tar+gzip']));
  });

  it('import makes a one-layer image from a directory', async () => {
    const dir = join(fx.work, 'rootfs-import');
    await mkdir(join(dir, 'etc'), { recursive: true });
    await writeFile(join(dir, 'etc/motd'), 'imported\n');
    const id = (await builder('import', dir, 'imported:1')).trim();
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await inspect('imported:1')).Id).toBe(id);
    const bundle = join(fx.work, 'imported-bundle');
    run('umoci', ['unpack', '--image', `${root}:docker.io/library/imported:1`, bundle]);
    expect(await readFile(join(bundle, 'rootfs/etc/motd'), 'utf8')).toBe('imported\n');
    expect(await builder('history', 'imported:1')).toContain(`Imported from ${dir}`);
    // --change sets the config as docker import -c does: only what the changes say (no default PATH).
    await builder('import', '-c', 'CMD ["cat", "/etc/motd"]', '-c', 'ENV MODE=imported', dir, 'imported:2');
    const changed = (JSON.parse(await builder('inspect', 'imported:2')) as Array<{ Config: { Cmd?: string[]; Env?: string[] } }>)[0]!.Config;
    expect(changed).toMatchObject({ Cmd: ['cat', '/etc/motd'], Env: ['MODE=imported'] });
    const bad = await runBuilder(['import', '--root', root, '-c', 'CMD ["x"]', '-c', 'RUN rm -rf /', dir, 'imported:3']);
    expect(bad.code).toBe(2); // bad usage, as a Dockerfile that does not compile
    expect(bad.stderr).toContain('--change:2: RUN is not a valid change command');
    // A save that fails halfway (a blob gone from the store) leaves no archive, not even a partial one.
    const layer = (JSON.parse(await builder('inspect', 'imported:1')) as Array<{ Manifest: { layers: Array<{ digest: string }> } }>)[0]!.Manifest.layers[0]!.digest;
    await rm(join(root, 'blobs/sha256', layer.slice('sha256:'.length)));
    const outDir = join(fx.work, 'failed-save');
    await mkdir(outDir);
    const r = await runBuilder(['save', '--root', root, '-o', join(outDir, 'x.tar'), 'imported:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ENOENT');
    expect(await readdir(outDir)).toEqual([]);
  });
});

describe('build --output', () => {
  let root: string;
  let ctx: string;
  let rootfs: string;

  beforeAll(async () => {
    root = join(fx.work, 'out-root');
    ctx = join(fx.work, 'out-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'hello'), 'hello\n');
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nCOPY --chown=1000:1000 hello /srv/hello\nRUN chmod 4755 /srv/hello && rm /bin/vi\n`);
    const oci = join(fx.work, 'out.oci.tar');
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'quiet', '-t', 'out:1', '-o', `type=oci,dest=${oci}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    // The reference filesystem: umoci's unpack of the OCI archive.
    const layout = join(fx.work, 'out-layout');
    await mkdir(layout);
    run('tar', ['-xf', oci, '-C', layout]);
    run('umoci', ['unpack', '--image', `${layout}:docker.io/library/out:1`, join(fx.work, 'out-bundle')]);
    rootfs = join(fx.work, 'out-bundle', 'rootfs');
  });

  const owned = (tree: Map<string, FsEntry>, uid: number, gid: number) => new Map([...tree].map(([p, e]) => [p, { ...e, uid, gid }]));

  it('type=local (and a bare -o DIR) is the image filesystem, files owned by the user who runs the build', async () => {
    const dest = join(fx.work, 'local-out');
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'quiet', '-o', dest, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const ours = fsTree(dest);
    expect(ours.has('/bin/vi')).toBe(false);
    expect(ours.get('/srv/hello')?.mode).toBe(0o4755);
    expect(treeDifferences(owned(fsTree(rootfs), process.getuid!(), process.getgid!()), ours)).toEqual([]);
  });

  it('type=tar (to a file or stdout) holds the image filesystem with the image\'s owners', async () => {
    const file = join(fx.work, 'fs.tar');
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'quiet', '-o', `type=tar,dest=${file}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const listing = run('tar', ['-tvf', file, '--numeric-owner']);
    expect(listing).toMatch(/-rwsr-xr-x 1000\/1000 +6 .* srv\/hello\n/);
    const unpacked = join(fx.work, 'fs-unpacked');
    await mkdir(unpacked);
    run('tar', ['-xpf', file, '--numeric-owner', '-C', unpacked]);
    expect(treeDifferences(fsTree(rootfs), fsTree(unpacked))).toEqual([]);
    const toStdout = spawnSync('bin/builder', ['build', '--network', 'none', '--root', root, '--progress', 'quiet', '-o', 'type=tar,dest=-', ctx], { maxBuffer: 64 << 20 });
    expect(toStdout.status, toStdout.stderr.toString()).toBe(0);
    expect(toStdout.stdout.equals(await readFile(file))).toBe(true);
  });

  it('type=docker writes an archive skopeo reads as docker-archive; bad output specs fail with exit 2', async () => {
    const file = join(fx.work, 'out.docker.tar');
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'quiet', '-t', 'out:1', '-o', `type=docker,dest=${file}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const inspected = JSON.parse(run('skopeo', ['inspect', `docker-archive:${file}`])) as { RepoTags: string[]; Layers: string[] };
    expect(inspected.Layers).toHaveLength(3);
    for (const spec of ['type=zip,dest=x', 'type=local', 'type=oci,dest=x,compression=zstd']) {
      const bad = await runBuilder(['build', '--root', root, '-o', spec, ctx]);
      expect(bad.code, spec).toBe(2);
      expect(bad.stderr).toContain(`invalid --output "${spec}"`);
    }
  });

  it.skipIf(noDocker)(`--load puts the image into the docker engine (${noDocker ?? 'engine present'})`, async () => {
    const name = `builder-test-load-flag-${process.pid}:1`;
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'plain', '-t', name, '--load', ctx], { env: { PATH: `/usr/bin:${process.env.PATH}` } });
    try {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`Loaded image: ${name}`);
      expect(run(DOCKER, ['run', '--rm', '--network=none', name, 'cat', '/srv/hello'])).toBe('hello\n');
    } finally {
      spawnSync(DOCKER, ['rmi', name]);
    }
  });

  it('--load without an engine fails with docker\'s reason', async () => {
    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'quiet', '--load', ctx], { env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
    expect(r.code).toBe(1);
    // docker's own reason, or that there is no docker command at all.
    expect(r.stderr).toMatch(/--load: docker load failed.*(Cannot connect|nonexistent)|--load needs the docker command/s);
  });
});

function createHashHex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

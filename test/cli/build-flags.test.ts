// `builder build` flags as a user types them: -q with --iidfile, --metadata-file, --label and
// `-f -` in one real build; the dry run with --build-context; and the usage errors (exit code 2)
// for what is not supported or malformed, given before anything is built.

import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openState } from '../../src/cache/state.js';
import type { ImageConfigFile } from '../../src/oci/types.js';
import { unsupportedContext } from '../../src/client/context-sources.js';
import { parseAddHost, parseShmSize, parseUlimit } from '../../src/client/run-settings.js';
import { BUILDER_BIN, run, runBuilder } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('cli-build-flags');
const tag = () => `${fx.registry.host}/cli/flags:1`;

describe('builder build flags', () => {
  it('-q prints only the image ID, as --iidfile writes it; -f - reads the Dockerfile from stdin; --label; --metadata-file describes the pushed image', async () => {
    const ctx = join(fx.work, 'ctx');
    const root = join(fx.work, 'root');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\n');
    await writeFile(join(ctx, 'hello.txt'), 'hello\n');
    const iid = join(fx.work, 'iid');
    const meta = join(fx.work, 'meta.json');
    const args = ['build', '-q', '--root', root, '--network', 'none', '-t', tag(), '--push', '--label', 'org.example.team=build', '--iidfile', iid, '--metadata-file', meta, '-f', '-', ctx];
    const r = spawnSync(BUILDER_BIN, args, { input: `FROM ${fx.base}\nCOPY hello.txt /\nRUN cat /hello.txt\n`, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const id = await readFile(iid, 'utf8');
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(r.stdout).toBe(`${id}\n`);

    const metadata = JSON.parse(await readFile(meta, 'utf8')) as Record<string, unknown>;
    expect(metadata['containerimage.config.digest']).toBe(id);
    expect(metadata['image.name']).toBe(tag());
    // The pushed manifest (compressed layers), as skopeo sees it, not the one stored locally.
    const pushed = JSON.parse(run('skopeo', ['inspect', '--tls-verify=false', `docker://${tag()}`])) as { Digest: string };
    expect(metadata['containerimage.digest']).toBe(pushed.Digest);
    expect((metadata['containerimage.descriptor'] as { digest: string }).digest).toBe(pushed.Digest);
    const state = await openState(root);
    try {
      const named = await state.images.get(tag());
      expect(named?.digest).not.toBe(pushed.Digest);
      const config = await state.store.readJson<ImageConfigFile>(id as `sha256:${string}`);
      expect(config.config?.Labels).toEqual({ 'org.example.team': 'build' });
    } finally {
      await state.release({ clean: true });
    }
  });

  it('--snapshotter other than the state directory\'s fails the first step that needs snapshots, naming both', async () => {
    const ctx = join(fx.work, 'snapshotter-ctx');
    const root = join(fx.work, 'snapshotter-root');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'hello.txt'), 'hello\n');
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY hello.txt /\n');
    const made = await runBuilder(['build', '--root', root, '--snapshotter', 'native', '--progress', 'plain', ctx]);
    expect(made.code, made.stderr).toBe(0);
    await writeFile(join(ctx, 'hello.txt'), 'changed\n');
    const r = await runBuilder(['build', '--root', root, '--snapshotter', 'overlayfs', '--progress', 'plain', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${root} holds native snapshots; it cannot be opened as overlayfs`);
  });

  it('--dry-run plans a stage replaced by a --build-context directory', async () => {
    const ctx = join(fx.work, 'plan-ctx');
    const deps = join(fx.work, 'plan-deps');
    await mkdir(ctx, { recursive: true });
    await mkdir(deps, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch AS deps\nCOPY nothing /\nFROM scratch\nCOPY --from=deps / /deps/\n');
    const r = await runBuilder(['build', '--dry-run', '--root', join(fx.work, 'plan-root'), '--build-context', `deps=${deps}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('stage 0 deps: FROM context:deps\n');
    expect(r.stdout).not.toContain('COPY nothing');
  });

  it.each([
    [['-'], 'a build context read from stdin ("-") is not supported yet'],
    [['https://github.com/moby/buildkit.git'], 'a Git repository as build context ("https://github.com/moby/buildkit.git") is not supported yet'],
    [['--add-host', 'db:10.0.0.300', '.'], 'invalid --add-host "db:10.0.0.300": "10.0.0.300" is not an IP address'],
    [['--ulimit', 'nofile=a', '.'], 'invalid --ulimit "nofile=a": expected NAME=SOFT[:HARD]'],
    [['--shm-size', 'lots', '.'], 'invalid --shm-size: invalid value for size: "lots"'],
    [['--build-context', 'deps', '.'], 'invalid --build-context "deps": expected NAME=PATH'],
  ])('builder build %j: exit code 2 and a clear error', async (args, message) => {
    const r = await runBuilder(['build', '--root', join(fx.work, 'unused-root'), ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`ERROR: ${message}`);
    expect(r.stdout).toBe('');
  });

  it('knows the other remote contexts docker knows, and the flags\' forms', () => {
    for (const path of ['git@github.com:moby/buildkit.git', 'git://example.com/repo', 'github.com/moby/buildkit', 'https://example.com/repo.git#main']) {
      expect(unsupportedContext(path)).toMatch(/^a Git repository as build context/);
    }
    expect(unsupportedContext('https://example.com/context.tar.gz')).toMatch(/^a URL as build context/);
    expect(unsupportedContext('./github.com/dir')).toBeUndefined();
    expect(parseAddHost('db=10.0.0.1')).toEqual({ host: 'db', ip: '10.0.0.1' });
    expect(parseAddHost('v6:[fd00::1]')).toEqual({ host: 'v6', ip: 'fd00::1' });
    expect(parseAddHost('v6:fd00::1')).toEqual({ host: 'v6', ip: 'fd00::1' });
    expect(() => parseAddHost('db')).toThrow('invalid --add-host "db": expected HOST:IP');
    expect(() => parseAddHost('gw:host-gateway')).toThrow(/host-gateway is not supported/);
    expect(parseUlimit('nproc=100')).toEqual({ name: 'nproc', soft: 100, hard: 100 });
    expect(parseShmSize('1g')).toBe(1024 ** 3);
  });
});

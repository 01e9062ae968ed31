// Everyday `docker build` flags through the library and real runc: --add-host, --ulimit and
// --shm-size as a RUN step sees them (and what they do to its cache key), --iidfile and
// --metadata-file against what the build stored, the Dockerfile given as text (`-f -`).

import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { build, type BuildOptions } from '../../src/client/build.js';
import { openState } from '../../src/cache/state.js';
import type { ProgressEvent } from '../../src/progress.js';
import { DOCKER, dockerSkipReason } from '../helpers/differential.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { parseAddHost } from '../../src/client/run-settings.js';

const fx = useBuildFixture('build-flags');

let counter = 0;

/** Builds a context holding `dockerfile`; returns the RUN steps' stdout and which steps ran. */
async function buildWith(dockerfile: string, opts: Partial<BuildOptions> = {}, root = join(fx.work, 'root')) {
  const ctx = join(fx.work, `ctx-${++counter}`);
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'Dockerfile'), dockerfile.replaceAll('BASE', fx.base));
  const events: ProgressEvent[] = [];
  const result = await build({ context: ctx, root, network: 'none', onProgress: (e) => events.push(e), ...opts });
  const stdout = events.flatMap((e) => (e.type === 'log' && e.stream === 'stdout' ? [e.data] : [])).join('');
  const ran = events.flatMap((e) => (e.type === 'step' && e.status === 'started' && e.name.includes('RUN') ? [e.name] : []));
  return { result, stdout, ran };
}

describe('RUN settings of the build', () => {
  it('--add-host lines follow BuildKit\'s /etc/hosts; a new address reuses the cache, a new name does not', async () => {
    const root = join(fx.work, 'hosts-root');
    const df = 'FROM BASE\nRUN cat /etc/hosts\n';
    const first = await buildWith(df, { extraHosts: [{ host: 'db.internal', ip: '10.1.2.3' }, { host: 'v6.internal', ip: 'fd00::1' }] }, root);
    expect(first.stdout).toBe('127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n10.1.2.3\tdb.internal\nfd00::1\tv6.internal\n');
    const moved = await buildWith(df, { extraHosts: [{ host: 'db.internal', ip: '10.9.9.9' }, { host: 'v6.internal', ip: 'fd00::2' }] }, root);
    expect(moved.ran).toEqual([]);
    const renamed = await buildWith(df, { extraHosts: [{ host: 'cache.internal', ip: '10.1.2.3' }, { host: 'v6.internal', ip: 'fd00::1' }] }, root);
    expect(renamed.ran).toHaveLength(1);
    const without = await buildWith(df, {}, root);
    expect(without.stdout).not.toContain('internal');
  });

  it('--ulimit sets the soft and hard limits a RUN step sees, and is part of its cache key', async () => {
    const root = join(fx.work, 'ulimit-root');
    const df = 'FROM BASE\nRUN echo "$(ulimit -Sn) $(ulimit -Hn) $(ulimit -Sc)"\n';
    const first = await buildWith(df, { ulimits: [{ name: 'nofile', soft: 512, hard: 1024 }, { name: 'core', soft: 0, hard: 0 }] }, root);
    expect(first.stdout).toBe('512 1024 0\n');
    const other = await buildWith(df, { ulimits: [{ name: 'nofile', soft: 256, hard: 1024 }, { name: 'core', soft: 0, hard: 0 }] }, root);
    expect(other.stdout).toBe('256 1024 0\n');
    expect(other.ran).toHaveLength(1);
  });

  it('--shm-size sizes /dev/shm (default 64 MiB, as Docker)', async () => {
    const df = 'FROM BASE\nRUN df -k /dev/shm | tail -n 1 | awk \'{print $2}\'\n';
    expect((await buildWith(df, { shmSize: 128 * 1024 * 1024 })).stdout).toBe('131072\n');
    expect((await buildWith(df, { noCache: true })).stdout).toBe('65536\n');
  });

  it('refuses a bad setting before anything runs, naming it', async () => {
    await expect(buildWith('FROM BASE\n', { extraHosts: [{ host: 'db', ip: 'not-an-ip' }] })).rejects.toThrow(/"not-an-ip" is not an IP address/);
    await expect(buildWith('FROM BASE\n', { ulimits: [{ name: 'nofile', soft: 10, hard: 5 }] })).rejects.toThrow(/soft limit 10 is above the hard limit 5/);
    await expect(buildWith('FROM BASE\n', { ulimits: [{ name: 'files', soft: 1, hard: 1 }] })).rejects.toThrow(/unknown limit "files"/);
  });
});

describe('files about the result', () => {
  it('--iidfile holds the image ID (config digest, no newline); --metadata-file the keys buildx writes', async () => {
    const iid = join(fx.work, 'iid');
    const meta = join(fx.work, 'meta.json');
    const { result } = await buildWith('FROM BASE\nLABEL a=b\n', { tags: ['flags/app:1', 'flags/app:2'], iidFile: iid, metadataFile: meta });
    expect(await readFile(iid, 'utf8')).toBe(result.configDigest);

    const state = await openState(join(fx.work, 'root'));
    try {
      const named = await state.images.get('docker.io/flags/app:1');
      expect(named?.digest).toBe(result.manifestDigest);
      const manifest = await state.store.readJson<{ config: { digest: string } }>(result.manifestDigest);
      expect(manifest.config.digest).toBe(result.configDigest);
      expect(JSON.parse(await readFile(meta, 'utf8'))).toEqual({
        'containerimage.config.digest': result.configDigest,
        'containerimage.digest': result.manifestDigest,
        'containerimage.descriptor': { mediaType: named!.mediaType, digest: result.manifestDigest, size: named!.size },
        'image.name': 'docker.io/flags/app:1,docker.io/flags/app:2',
      });
    } finally {
      await state.release({ clean: true });
    }
  });

  it('an --iidfile in a missing directory fails naming it', async () => {
    const bad = join(fx.work, 'no-such-dir', 'iid');
    await expect(buildWith('FROM BASE\n', { iidFile: bad })).rejects.toThrow(`--iidfile ${bad}: no such directory`);
  });
});

describe('the Dockerfile as text (-f -)', () => {
  it('builds it with the context of the build; errors name it', async () => {
    const ctx = join(fx.work, 'text-ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'data.txt'), 'from the context\n');
    await writeFile(join(ctx, 'Dockerfile'), 'FROM scratch\n');
    const events: ProgressEvent[] = [];
    await build({
      context: ctx,
      root: join(fx.work, 'root'),
      network: 'none',
      dockerfile: 'stdin',
      dockerfileText: `FROM ${fx.base}\nCOPY data.txt /\nRUN cat /data.txt\n`,
      onProgress: (e) => events.push(e),
    });
    expect(events.flatMap((e) => (e.type === 'log' ? [e.data] : [])).join('')).toBe('from the context\n');
    await expect(build({ context: ctx, root: join(fx.work, 'root'), dockerfile: 'stdin', dockerfileText: `FROM ${fx.base}\nNOPE x\n` })).rejects.toThrow(/stdin:2/);
  });
});

const dockerMissing = dockerSkipReason();

describe.skipIf(Boolean(dockerMissing))(`the same flags with Docker 20.10's BuildKit${dockerMissing ? ` (skipped: ${dockerMissing})` : ''}`, () => {
  it('--add-host: the same /etc/hosts; the same cache hit for a new address and miss for a new name', async () => {
    const ctx = join(fx.work, 'docker-hosts');
    await mkdir(ctx, { recursive: true });
    // A per-run token keeps Docker's cache of earlier runs out of it.
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${fx.base}\nRUN echo ${Date.now()} >/dev/null && cat /etc/hosts\n`);
    const docker = (hosts: string[]) => {
      const r = spawnSync(DOCKER, ['build', '--network=none', '--progress=plain', ...hosts.flatMap((h) => ['--add-host', h]), ctx], { encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: '1' } });
      if (r.status !== 0) throw new Error(r.stderr);
      // Plain progress: `#5 0.766 <line>` for what the step printed, `#5 CACHED` for a hit.
      const step = /^#(\d+) \[2\/2\] RUN/m.exec(r.stderr)![1];
      const lines = r.stderr.split('\n').filter((l) => l.startsWith(`#${step} `));
      return { cached: lines.some((l) => l === `#${step} CACHED`), stdout: lines.flatMap((l) => (/^#\d+ \d+\.\d+ /.test(l) ? [`${l.replace(/^#\d+ \d+\.\d+ /, '')}\n`] : [])).join('') };
    };
    const ours = async (hosts: string[]) => {
      const events: ProgressEvent[] = [];
      await build({ context: ctx, root: join(fx.work, 'docker-hosts-root'), network: 'none', extraHosts: hosts.map(parseAddHost), onProgress: (e) => events.push(e) });
      return {
        cached: !events.some((e) => e.type === 'step' && e.status === 'started' && e.name.includes('RUN')),
        stdout: events.flatMap((e) => (e.type === 'log' ? [e.data] : [])).join(''),
      };
    };
    const hits: boolean[] = [];
    for (const hosts of [['db.internal:10.1.2.3', 'v6.internal:fd00::1'], ['db.internal:10.9.9.9', 'v6.internal:fd00::2'], ['cache.internal:10.1.2.3', 'v6.internal:fd00::2']]) {
      const theirs = docker(hosts);
      const mine = await ours(hosts);
      expect(mine.cached, hosts.join(' ')).toBe(theirs.cached);
      if (!theirs.cached) expect(mine.stdout).toBe(theirs.stdout);
      hits.push(theirs.cached);
    }
    expect(hits).toEqual([false, true, false]);
  });
});

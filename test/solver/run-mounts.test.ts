// RUN --mount through the real solver and runc: bind (context, stage, read-write), cache (kept
// between builds, shared by id, owner and mode, locked), tmpfs, and what a mount leaves in the
// image (nothing) and in the cache key (bound content: yes; cache content: no).

import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { build, type BuildOptions } from '../../src/client/build.js';
import type { ProgressEvent } from '../../src/progress.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { unpackOciArchive } from '../helpers/oci-tar.js';

const fx = useBuildFixture('run-mounts');

interface Built {
  /** The image's root filesystem, unpacked by umoci. */
  fs: string;
  /** Entries of each layer's tar, in order. */
  layers: string[][];
  ran: string[];
  cached: string[];
  events: ProgressEvent[];
}

let counter = 0;

/** Builds `files` (a context holding a Dockerfile) into an OCI archive and unpacks it with umoci. */
async function buildImage(ctx: string, root: string, opts: Partial<BuildOptions> = {}): Promise<Built> {
  const n = ++counter;
  const out = join(fx.work, `image-${n}.tar`);
  const events: ProgressEvent[] = [];
  await build({ context: ctx, root, network: 'none', outputs: [{ type: 'oci', dest: out }], tags: [`mounts:${n}`], onProgress: (e) => events.push(e), ...opts });
  const fs = await unpackOciArchive(out, fx.work, `image-${n}`);
  const layout = join(fx.work, `image-${n}-layout`);
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await readFile(join(layout, 'blobs', ...index.manifests[0]!.digest.split(':')), 'utf8')) as { layers: Array<{ digest: string }> };
  const layers = manifest.layers.map((l) => {
    const t = spawnSync('tar', ['-tzf', join(layout, 'blobs', ...l.digest.split(':'))], { encoding: 'utf8' });
    return t.stdout.split('\n').filter(Boolean);
  });
  const steps = events.filter((e): e is Extract<ProgressEvent, { type: 'step' }> => e.type === 'step' && e.name.startsWith('['));
  return {
    fs,
    layers,
    ran: steps.filter((e) => e.status === 'started').map((e) => e.name),
    cached: steps.filter((e) => e.status === 'cached').map((e) => e.name),
    events,
  };
}

async function writeContext(dir: string, files: Record<string, string>): Promise<string> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  return dir;
}

const ranRun = (b: Built, text: string) => b.ran.some((n) => n.includes(text));
const cachedRun = (b: Built, text: string) => b.cached.some((n) => n.includes(text));

describe('RUN --mount=type=bind', () => {
  it('mounts the context (after .dockerignore) read-only; editing a bound file re-runs the step, other files do not', async () => {
    const ctx = await writeContext(join(fx.work, 'bind-ctx'), {
      Dockerfile: `FROM ${fx.base}
RUN --mount=type=bind,source=src,target=/src \\
    cat /src/a.txt > /a.copy && ls -a /src > /listing \\
    && if touch /src/new 2>/dev/null; then echo writable > /ro; else echo read-only > /ro; fi
RUN --mount=type=bind,source=src/a.txt,target=/mnt/one.txt cat /mnt/one.txt > /one.copy
`,
      'src/a.txt': 'alpha\n',
      'src/skip.log': 'ignored\n',
      'other.txt': 'unrelated\n',
      '.dockerignore': '**/*.log\n',
    });
    const root = join(fx.work, 'bind-ctx-root');
    const first = await buildImage(ctx, root);
    expect(await readFile(join(first.fs, 'a.copy'), 'utf8')).toBe('alpha\n');
    expect(await readFile(join(first.fs, 'one.copy'), 'utf8')).toBe('alpha\n');
    expect((await readFile(join(first.fs, 'listing'), 'utf8')).split('\n').filter(Boolean)).toEqual(['.', '..', 'a.txt']);
    expect(await readFile(join(first.fs, 'ro'), 'utf8')).toBe('read-only\n');
    // No mount point is left behind in the image.
    expect(await readdir(first.fs)).not.toContain('src');
    expect(await readdir(first.fs)).not.toContain('mnt');

    await writeFile(join(ctx, 'other.txt'), 'changed, but not mounted\n');
    await writeFile(join(ctx, 'src/skip.log'), 'changed, but ignored\n');
    const second = await buildImage(ctx, root);
    expect(second.ran.filter((n) => n.includes('RUN'))).toEqual([]);

    await writeFile(join(ctx, 'src/a.txt'), 'beta\n');
    const third = await buildImage(ctx, root);
    expect(ranRun(third, 'cat /src/a.txt')).toBe(true);
    expect(ranRun(third, 'cat /mnt/one.txt')).toBe(true);
    expect(await readFile(join(third.fs, 'one.copy'), 'utf8')).toBe('beta\n');
  });

  it('mounts a stage; rw lets the step write, and the writes go nowhere', async () => {
    const ctx = await writeContext(join(fx.work, 'bind-stage'), {
      Dockerfile: `FROM ${fx.base} AS gen
RUN mkdir /out && echo generated > /out/g.txt
FROM ${fx.base}
WORKDIR /work
RUN --mount=type=bind,from=gen,source=/out,target=gen,rw \\
    cat gen/g.txt > /g.copy && echo scribble > gen/g.txt && echo new > gen/new.txt
RUN --mount=type=bind,from=gen,source=/out,target=/again cat /again/g.txt > /g.again && ls /again > /again.list
RUN --mount=type=bind,source=.,target=/ctx,rw echo x > /ctx/written-by-step
`,
    });
    const built = await buildImage(ctx, join(fx.work, 'bind-stage-root'));
    expect(await readFile(join(built.fs, 'g.copy'), 'utf8')).toBe('generated\n');
    expect(await readFile(join(built.fs, 'g.again'), 'utf8')).toBe('generated\n');
    expect(await readFile(join(built.fs, 'again.list'), 'utf8')).toBe('g.txt\n');
    // The relative target went under the WORKDIR, and left nothing there.
    expect(await readdir(join(built.fs, 'work'))).toEqual([]);
    // A read-write bind of the context writes into a throwaway copy, never into the context.
    expect(await readdir(ctx)).toEqual(['Dockerfile']);
  });

  it('takes a source literally, as BuildKit: brackets and stars name files, not patterns', async () => {
    const ctx = await writeContext(join(fx.work, 'bind-literal'), {
      Dockerfile: `FROM ${fx.base}\nRUN --mount=type=bind,source=pages/[id].tsx,target=/page.tsx cat /page.tsx > /page.copy\n`,
      'pages/[id].tsx': 'the route\n',
      'pages/i.tsx': 'what a pattern would match\n',
    });
    const built = await buildImage(ctx, join(fx.work, 'bind-literal-root'));
    expect(await readFile(join(built.fs, 'page.copy'), 'utf8')).toBe('the route\n');
  });

  it('a missing bind source fails the step with the path', async () => {
    const ctx = await writeContext(join(fx.work, 'bind-missing'), {
      Dockerfile: `FROM ${fx.base}\nRUN --mount=type=bind,source=nope,target=/x true\n`,
    });
    await expect(buildImage(ctx, join(fx.work, 'bind-missing-root'))).rejects.toThrow(/"\/nope" not found/);
  });
});

describe('RUN --mount=type=cache', () => {
  it('keeps its content between builds and steps, out of layers and out of the cache key', async () => {
    const ctx = await writeContext(join(fx.work, 'cache'), {
      Dockerfile: `FROM ${fx.base}
ARG ROUND
RUN --mount=type=cache,target=/cache echo "round $ROUND" >> /cache/log && cat /cache/log > /seen
RUN --mount=type=cache,target=/var/cache/other,id=/cache cat /var/cache/other/log > /seen-by-id
RUN --mount=type=cache,target=/owned,uid=1000,gid=1000,mode=0700 stat -c '%u %g %a' /owned > /owned.stat
RUN --mount=type=cache,target=/only-cache touch /only-cache/file
`,
    });
    const root = join(fx.work, 'cache-root');
    const first = await buildImage(ctx, root, { buildArgs: { ROUND: '1' } });
    expect(await readFile(join(first.fs, 'seen'), 'utf8')).toBe('round 1\n');
    expect(await readFile(join(first.fs, 'seen-by-id'), 'utf8')).toBe('round 1\n');
    expect(await readFile(join(first.fs, 'owned.stat'), 'utf8')).toBe('1000 1000 700\n');
    expect(await readdir(first.fs)).not.toContain('cache');
    expect(await readdir(first.fs)).not.toContain('owned');
    expect(await readdir(first.fs)).not.toContain('only-cache');
    // A step whose only writes are under a cache mount adds an empty layer.
    expect(first.layers.at(-1)).toEqual([]);

    // A changed build arg re-runs the step: the cache still holds the first round.
    const second = await buildImage(ctx, root, { buildArgs: { ROUND: '2' } });
    expect(await readFile(join(second.fs, 'seen'), 'utf8')).toBe('round 1\nround 2\n');

    // The cache holds more now, but that is not an input: round 1 again is all cache hits.
    const third = await buildImage(ctx, root, { buildArgs: { ROUND: '1' } });
    expect(cachedRun(third, 'echo "round $ROUND"')).toBe(true);
    expect(third.ran.filter((n) => n.includes('RUN'))).toEqual([]);
    expect(await readFile(join(third.fs, 'seen'), 'utf8')).toBe('round 1\n');
  });

  it('sharing=locked lets one step at a time use it, across parallel stages', async () => {
    const step = (name: string) =>
      `RUN --mount=type=cache,id=locked-log,sharing=locked,target=/c sh -c 'echo start-${name} >> /c/log; sleep 1; echo end-${name} >> /c/log' && echo ${name} > /${name}`;
    const ctx = await writeContext(join(fx.work, 'cache-locked'), {
      Dockerfile: `FROM ${fx.base} AS a
${step('a')}
FROM ${fx.base} AS b
${step('b')}
FROM ${fx.base}
COPY --from=a /a /a
COPY --from=b /b /b
RUN --mount=type=cache,id=locked-log,target=/c cp /c/log /log
`,
    });
    const built = await buildImage(ctx, join(fx.work, 'cache-locked-root'));
    const log = (await readFile(join(built.fs, 'log'), 'utf8')).split('\n').filter(Boolean);
    expect(log).toHaveLength(4);
    expect([log[0]!.slice(6), log[2]!.slice(6)].sort()).toEqual(['a', 'b']);
    expect(log[1]).toBe(`end-${log[0]!.slice(6)}`);
    expect(log[3]).toBe(`end-${log[2]!.slice(6)}`);
  });

  it('is seeded from another stage when first created', async () => {
    const ctx = await writeContext(join(fx.work, 'cache-seed'), {
      Dockerfile: `FROM ${fx.base} AS seed
RUN mkdir -p /deps && echo seeded > /deps/s.txt
FROM ${fx.base}
RUN --mount=type=cache,target=/c,from=seed,source=/deps cat /c/s.txt > /from-seed
`,
    });
    const built = await buildImage(ctx, join(fx.work, 'cache-seed-root'));
    expect(await readFile(join(built.fs, 'from-seed'), 'utf8')).toBe('seeded\n');
  });
});

describe('RUN --mount=type=tmpfs', () => {
  it('is empty, shadows the image for the step only, and leaves nothing', async () => {
    const ctx = await writeContext(join(fx.work, 'tmpfs'), {
      Dockerfile: `FROM ${fx.base}
RUN mkdir /data && echo keep > /data/keep
RUN --mount=type=tmpfs,target=/data,size=1m ls -A /data > /inside && echo lost > /data/lost \\
    && df -k /data | tail -1 | awk '{print $2}' > /size
RUN --mount=type=tmpfs,target=/scratch/t echo x > /scratch/t/f
`,
    });
    const built = await buildImage(ctx, join(fx.work, 'tmpfs-root'));
    expect(await readFile(join(built.fs, 'inside'), 'utf8')).toBe('');
    expect(await readFile(join(built.fs, 'size'), 'utf8')).toBe('1024\n');
    expect(await readdir(join(built.fs, 'data'))).toEqual(['keep']);
    expect(await readdir(built.fs)).not.toContain('scratch');
  });
});

describe('builder build --dry-run', () => {
  it('plans every mount type without running anything', async () => {
    const ctx = await writeContext(join(fx.work, 'plan'), {
      Dockerfile: `FROM ${fx.base} AS s
FROM ${fx.base}
RUN --mount=type=bind,from=s,target=/s --mount=type=cache,target=/c,sharing=private \\
    --mount=type=tmpfs,target=/t --mount=type=secret,id=tok --mount=type=ssh true
`,
    });
    const { plan } = await import('../../src/client/plan.js');
    const result = await plan({ context: ctx, root: join(fx.work, 'plan-root') });
    const runs = [...result.compiled.definition.vertices.values()].filter((v) => v.op.type === 'exec');
    expect(runs).toHaveLength(1);
    const op = runs[0]!.op as Extract<typeof runs[0]['op'], { type: 'exec' }>;
    expect(op.mounts?.map((m) => m.type).sort()).toEqual(['bind', 'cache', 'secret', 'ssh', 'tmpfs']);
    // Nothing ran: no state directory was made.
    expect(await stat(join(fx.work, 'plan-root')).catch(() => undefined)).toBeUndefined();
  });
});

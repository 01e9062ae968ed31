// plan(): the library side of --dry-run. Compiles with what is local only.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalOp } from '../../src/definition/index.js';
import { formatPlan, plan } from '../../src/client/plan.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'builder-plan-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('plan()', () => {
  it('uses <Dockerfile>.dockerignore before the context .dockerignore', async () => {
    await writeFile(join(dir, 'Dockerfile.dev'), 'FROM scratch\nCOPY . /app/\n');
    await writeFile(join(dir, 'Dockerfile.dev.dockerignore'), 'node_modules\n*.log\n');
    await writeFile(join(dir, '.dockerignore'), 'other\n');
    const p = await plan({ context: dir, dockerfile: join(dir, 'Dockerfile.dev'), root: join(dir, 'no-state') });
    const local = [...p.compiled.definition.vertices.values()].map((v) => v.op).find((op): op is LocalOp => op.type === 'local');
    expect(local?.exclude).toEqual(['node_modules', '*.log']);
    expect(p.unresolved).toEqual([]);
    expect(formatPlan(p)).toMatch(/^stage 0 stage-0: FROM scratch\n {2}sha256:[0-9a-f]{64} {2}\[1\/1\] COPY \. \/app\/\ntarget: sha256:[0-9a-f]{64}\n$/);
  });

  it('COPY --from=<image> is not pulled either: reported as unresolved', async () => {
    await writeFile(join(dir, 'Dockerfile.img'), 'FROM scratch\nCOPY --from=nginx:1.25 /etc/nginx /etc/nginx\n');
    const p = await plan({ context: dir, dockerfile: join(dir, 'Dockerfile.img'), root: join(dir, 'no-state') });
    expect(p.unresolved).toEqual(['docker.io/library/nginx:1.25']);
  });

  it('shows the mounts of each RUN step under it: types, targets, ids and what a bind shows', async () => {
    await writeFile(
      join(dir, 'Dockerfile.mounts'),
      [
        'FROM scratch AS assets',
        'FROM alpine:3.19',
        'WORKDIR /src',
        'RUN --mount=type=cache,target=/root/.npm,sharing=locked --mount=type=bind,source=package.json,target=package.json \\',
        '    --mount=type=bind,from=assets,source=/dist,target=/dist,rw --mount=type=tmpfs,target=/tmp,size=64m \\',
        '    --mount=type=secret,id=npmrc,target=/root/.npmrc --mount=type=secret,id=tok,env=TOKEN,required --mount=type=ssh npm ci',
        'RUN make',
      ].join('\n'),
    );
    const p = await plan({ context: dir, dockerfile: join(dir, 'Dockerfile.mounts'), root: join(dir, 'no-state') });
    const run = p.stages[1]?.steps.find((s) => s.line === 4);
    expect(run?.mounts).toEqual([
      'bind /dist from stage assets path /dist rw',
      'cache /root/.npm id=/root/.npm sharing=locked',
      'bind /src/package.json from context path /package.json',
      'tmpfs /tmp size=67108864',
      'secret id=npmrc at /root/.npmrc',
      'secret id=tok env=TOKEN required',
      'ssh id=default at /run/buildkit/ssh_agent.0',
    ]);
    expect(p.stages[1]?.steps.find((s) => s.line === 7)).not.toHaveProperty('mounts');
    const text = formatPlan(p);
    expect(text).toMatch(/\[stage-1 3\/4\] RUN --mount=type=cache.*\n {6}mount bind \/dist from stage assets path \/dist rw\n {6}mount cache \/root\/\.npm/);
    expect(text).toMatch(/ {6}mount ssh id=default at \/run\/buildkit\/ssh_agent\.0\n {2}sha256:[0-9a-f]{64} {2}\[stage-1 4\/4\] RUN make\n/);
  });

  it('reports Dockerfile errors as DockerfileErrors with the line', async () => {
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nCOPY\n');
    await expect(plan({ context: dir, root: join(dir, 'no-state') })).rejects.toThrow(/^Dockerfile:2: COPY requires at least two arguments/);
  });
});

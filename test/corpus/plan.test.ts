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

  it('reports Dockerfile errors as DockerfileErrors with the line', async () => {
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nCOPY\n');
    await expect(plan({ context: dir, root: join(dir, 'no-state') })).rejects.toThrow(/^Dockerfile:2: COPY requires at least two arguments/);
  });
});

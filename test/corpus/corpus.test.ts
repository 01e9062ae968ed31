// The corpus: Dockerfiles in the style of widely used official images (multi-stage builds,
// heredocs, long continued RUN lines, ARG-parametrised FROMs, escape directives …). Each one must
// parse and compile, and `builder build --dry-run` must print its plan. (Their CPU cost is a
// figure for `npm run bench -- --scenario dry-run`, not a test: a budget fails on a busy machine.)

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageConfigFile } from '../../src/oci/types.js';
import { compile, parseDockerfile } from '../../src/frontend/index.js';
import { plan } from '../../src/client/plan.js';
import { BUILDER_BIN } from '../helpers/cli.js';

const CORPUS = fileURLToPath(new URL('./dockerfiles/', import.meta.url));
const entries = readdirSync(CORPUS).sort();

/** Any reference resolves, to a config derived from its name (no I/O). */
async function anyImage(ref: string, platform: { os: string; architecture: string }) {
  const { createHash } = await import('node:crypto');
  const hex = createHash('sha256').update(ref).digest('hex');
  const config: ImageConfigFile = {
    os: platform.os,
    architecture: platform.architecture,
    config: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin'], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [] },
  };
  return { ref: `${ref.replace(/@.*$/, '')}@sha256:${hex}`, config };
}

describe('Dockerfile corpus', () => {
  it('holds at least 50 Dockerfiles', () => {
    expect(entries.length).toBeGreaterThanOrEqual(50);
  });

  for (const name of entries) {
    it(`${name}: parses and compiles`, async () => {
      const text = readFileSync(join(CORPUS, name, 'Dockerfile'), 'utf8');
      const df = parseDockerfile(text, 'Dockerfile');
      for (const instr of df.instructions) {
        expect(instr.startLine).toBeGreaterThan(0);
        expect(instr.endLine).toBeGreaterThanOrEqual(instr.startLine);
      }
      const r = await compile(df, {
        file: 'Dockerfile',
        buildArgs: {},
        platform: { os: 'linux', architecture: 'amd64' },
        resolveImage: anyImage,
        dockerignore: [],
      });
      expect(r.definition.vertices.has(r.root)).toBe(true);
      expect(r.stages.length).toBeGreaterThan(0);
      expect(r.image.history.length).toBeGreaterThan(0);
      // Compiling is deterministic: the same text gives the same root digest.
      const again = await compile(parseDockerfile(text, 'Dockerfile'), {
        file: 'Dockerfile',
        buildArgs: {},
        platform: { os: 'linux', architecture: 'amd64' },
        resolveImage: anyImage,
        dockerignore: [],
      });
      expect(again.root).toBe(r.root);
    });
  }
});

describe('builder build --dry-run on the corpus', () => {
  let root: string;
  beforeAll(async () => {
    // An empty state directory: nothing is resolvable locally, and nothing may be written.
    root = await mkdtemp(join(tmpdir(), 'builder-dryrun-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  function dryRun(dir: string): { code: number | null; stdout: string; stderr: string } {
    const r = spawnSync(BUILDER_BIN, ['build', '--dry-run', '--root', root, dir], { encoding: 'utf8' });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('prints stages and steps with vertex digests for every Dockerfile, and writes nothing', () => {
    for (const name of entries) {
      const r = dryRun(join(CORPUS, name));
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/^stage 0 /);
      expect(r.stdout).toMatch(/^ {2}sha256:[0-9a-f]{64} {2}\S/m);
      expect(r.stdout).toMatch(/^target: sha256:[0-9a-f]{64}$/m);
    }
    expect(readdirSync(root)).toEqual([]);
  });

  it('matches the library plan() and reports unresolved base images without pulling', async () => {
    const dir = join(CORPUS, '03-node-app');
    const r = dryRun(dir);
    const p = await plan({ context: dir, root });
    expect(r.stdout).toContain(`target: ${p.compiled.root}`);
    expect(p.unresolved).toEqual(['docker.io/library/node:20.11.1-alpine']);
    expect(r.stderr).toContain('docker.io/library/node:20.11.1-alpine is not in the local store; not pulled');
    expect(p.stages.map((s) => s.name)).toEqual(['deps', 'build', 'stage-2']);
  });

  it('plans the Dockerfiles that use RUN --mount, showing each mount (ids, never a secret value)', () => {
    const r = dryRun(join(CORPUS, '56-secrets-ssh'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('\n      mount secret id=api_token env=API_TOKEN required\n');
    expect(r.stdout).toContain('\n      mount bind /tmp/lib from stage fetch path /src/lib\n');
    expect(r.stdout).toContain('\n      mount ssh id=deploy at /run/deploy.sock\n');
    expect(dryRun(join(CORPUS, '55-go-mod-cache')).stdout).toContain('\n      mount cache /root/.cache/go-build id=gobuild-amd64 sharing=locked\n');
  });

  it('--target builds only the stages it needs', async () => {
    const p = await plan({ context: join(CORPUS, '38-target-stages'), root, target: 'test' });
    expect(p.stages.map((s) => s.name)).toEqual(['base', 'test']);
  });
});

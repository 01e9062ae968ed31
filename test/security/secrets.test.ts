// Build secrets must never leave the RUN step that mounts them: after builds that use a secret
// in every way (file, custom target, env, printed by the step, a failing step that prints it),
// every byte builder wrote (state directory, OCI archive, the registry it pushed to, progress
// events, plain and JSON CLI output, error messages) is scanned for the value.

import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import type { ProgressEvent } from '../../src/progress.js';
import { runBuilder } from '../helpers/cli.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { unpackOciArchive } from '../helpers/oci-tar.js';

const fx = useBuildFixture('secrets');

const SECRET = `tok-${randomBytes(12).toString('hex')}`;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** Files under `dir` (recursively, symlinks not followed) whose bytes, or gunzipped bytes, hold `needle`. */
async function filesHolding(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  const bytes = Buffer.from(needle);
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) {
      for (const name of await readdir(path)) await visit(join(path, name));
      return;
    }
    if (!st.isFile()) return;
    const data = await readFile(path);
    if (data.includes(bytes)) found.push(path);
    else if (data[0] === 0x1f && data[1] === 0x8b) {
      const plain = (() => {
        try {
          return gunzipSync(data);
        } catch {
          return Buffer.alloc(0);
        }
      })();
      if (plain.includes(bytes)) found.push(`${path} (gunzipped)`);
    }
  };
  await visit(dir);
  return found;
}

async function context(name: string, dockerfile: string): Promise<string> {
  const dir = join(fx.work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

describe('build secrets', () => {
  it('reach the step as a file, a custom target and an env var, and nowhere else', async () => {
    const ctx = await context(
      'uses',
      `FROM ${fx.base}
RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -c1-64 > /file.sha
RUN --mount=type=secret,id=tok,target=/etc/app/token,mode=0440,uid=1000,gid=1000 \\
    stat -c '%a %u %g' /etc/app/token > /custom.stat && sha256sum /etc/app/token | cut -c1-64 > /custom.sha
RUN --mount=type=secret,id=tok,env=TOKEN printf %s "$TOKEN" | sha256sum | cut -c1-64 > /env.sha
RUN --mount=type=secret,id=tok echo "the token is $(cat /run/secrets/tok)"
RUN --mount=type=secret,id=absent if [ -e /run/secrets/absent ]; then echo present; else echo absent; fi > /absent
`,
    );
    const root = join(fx.work, 'uses-root');
    const archive = join(fx.work, 'uses.tar');
    const events: ProgressEvent[] = [];
    const tag = `${fx.registry.host}/secrets/app:1`;
    await build({
      context: ctx,
      root,
      network: 'none',
      tags: [tag],
      push: true,
      outputs: [{ type: 'image' }, { type: 'oci', dest: archive }],
      secrets: [{ id: 'tok', value: SECRET }],
      onProgress: (e) => events.push(e),
    });

    const fs = await unpackOciArchive(archive, fx.work, 'uses');
    const layout = join(fx.work, 'uses-layout');
    expect(await readFile(join(fs, 'file.sha'), 'utf8')).toBe(`${sha(SECRET)}\n`);
    expect(await readFile(join(fs, 'custom.sha'), 'utf8')).toBe(`${sha(SECRET)}\n`);
    expect(await readFile(join(fs, 'custom.stat'), 'utf8')).toBe('440 1000 1000\n');
    expect(await readFile(join(fs, 'env.sha'), 'utf8')).toBe(`${sha(SECRET)}\n`);
    expect(await readFile(join(fs, 'absent'), 'utf8')).toBe('absent\n');
    // No mount point was left: /run/secrets and /etc/app did not exist in the base.
    expect(await readdir(fs)).not.toContain('run');
    expect(await readdir(join(fs, 'etc'))).not.toContain('app');

    // What the step printed is masked.
    const logs = events.filter((e) => e.type === 'log').map((e) => (e as { data: string }).data).join('');
    expect(logs).toContain('the token is ***');

    expect(JSON.stringify(events)).not.toContain(SECRET);
    expect(await filesHolding(root, SECRET)).toEqual([]);
    expect(await filesHolding(layout, SECRET)).toEqual([]);
    expect(await filesHolding(join(dirname(fx.registry.logPath), 'data'), SECRET)).toEqual([]);

    // A new value is not a new input: every step is a cache hit.
    const again: ProgressEvent[] = [];
    await build({ context: ctx, root, network: 'none', tags: [tag], secrets: [{ id: 'tok', value: 'another value' }], onProgress: (e) => again.push(e) });
    expect(again.filter((e) => e.type === 'step' && e.status === 'started' && e.name.includes('RUN'))).toEqual([]);
  });

  it('a failing step that prints the secret shows *** in its error, and a missing required secret is named', async () => {
    const ctx = await context('fails', `FROM ${fx.base}\nRUN --mount=type=secret,id=tok cat /run/secrets/tok && exit 3\n`);
    const root = join(fx.work, 'fails-root');
    const events: ProgressEvent[] = [];
    const err = await build({ context: ctx, root, network: 'none', secrets: [{ id: 'tok', value: SECRET }], onProgress: (e) => events.push(e) }).then(
      () => undefined,
      (e: unknown) => e as Error & { outputTail?: string[] },
    );
    expect(err).toBeDefined();
    const shown = `${err!.message}\n${(err!.outputTail ?? []).join('\n')}\n${JSON.stringify(events)}`;
    expect(shown).toContain('***');
    expect(shown).not.toContain(SECRET);
    expect(await filesHolding(root, SECRET)).toEqual([]);

    const required = await context('required', `FROM ${fx.base}\nRUN --mount=type=secret,id=needed,required true\n`);
    await expect(build({ context: required, root, network: 'none' })).rejects.toThrow(/secret needed/);
  });

  it('builder build --secret from a file and from an env var: plain and JSON output never show it', async () => {
    const ctx = await context('cli', `FROM ${fx.base}\nRUN --mount=type=secret,id=a --mount=type=secret,id=b,env=B cat /run/secrets/a; echo "b=$B"\n`);
    const file = join(fx.work, 'cli-secret.txt');
    await writeFile(file, `${SECRET}-file`);
    const root = join(fx.work, 'cli-root');
    for (const progress of ['plain', 'json']) {
      const r = await runBuilder(['build', '--no-cache', '--network', 'none', '--root', root, '--progress', progress, '--secret', `id=a,src=${file}`, '--secret', 'id=b,env=THE_B', ctx], {
        env: { THE_B: `${SECRET}-env` },
      });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout + r.stderr).not.toContain(SECRET);
      expect(r.stdout + r.stderr).toContain('b=***');
    }
    expect(await filesHolding(root, SECRET)).toEqual([]);

    const missing = await runBuilder(['build', '--root', root, '--secret', `id=a,src=${join(fx.work, 'nope.txt')}`, ctx]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/nope\.txt/);
  });
});

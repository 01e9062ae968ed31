// An untrusted Dockerfile, context or base image must not copy a host file into an image.
// Every COPY/ADD source is resolved inside its own root (the context, a stage, an image), with
// symlinks followed as if that root were `/`: what resolves outside is "not found", as in
// BuildKit. Each escape below copied a host file before; each positive case shows that symlinks
// inside the root still work.

import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { build, type BuildOptions } from '../../src/client/build.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { unpackOciArchive } from '../helpers/oci-tar.js';

const fx = useBuildFixture('escape');
const CANARY = 'host secret that must never reach an image\n';
/** A host directory outside every build root, holding the canary. */
let hostDir: string;
let n = 0;

beforeAll(async () => {
  hostDir = join(fx.work, 'host');
  await mkdir(hostDir);
  await writeFile(join(hostDir, 'secret.txt'), CANARY);
});

/** Makes a context with `files` (strings are files, `{ link }` symlinks) and a Dockerfile. */
async function context(dockerfile: string, files: Record<string, string | { link: string }> = {}): Promise<string> {
  const ctx = join(fx.work, `ctx-${++n}`);
  await mkdir(ctx);
  await writeFile(join(ctx, 'Dockerfile'), dockerfile);
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(ctx, name, '..'), { recursive: true });
    if (typeof content === 'string') await writeFile(join(ctx, name), content);
    else await symlink(content.link, join(ctx, name));
  }
  return ctx;
}

const opts = (ctx: string, extra: Partial<BuildOptions> = {}): BuildOptions => ({ context: ctx, root: join(fx.work, 'root'), network: 'none', ...extra });

/** Builds and returns the image's root filesystem, as umoci unpacks it. */
async function buildFiles(ctx: string, extra: Partial<BuildOptions> = {}): Promise<string> {
  const out = join(fx.work, `out-${++n}.tar`);
  await build(opts(ctx, { outputs: [{ type: 'oci', dest: out }], tags: [`escape:${n}`], ...extra }));
  return unpackOciArchive(out, fx.work, `img-${n}`);
}

/** Every file under `dir`, to prove the canary is nowhere in an image. */
async function contents(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(await readFile(join(e.parentPath, e.name), 'utf8'));
  }
  return out;
}

describe('COPY and ADD from the build context never leave it', () => {
  const escapes: Array<[string, string, Record<string, string | { link: string }>]> = [
    ['an absolute symlink to /', 'COPY root/HOST/secret.txt /x', { root: { link: '/' } }],
    ['a relative symlink climbing out', 'COPY up/secret.txt /x', { up: { link: '../host' } }],
    ['a symlink named as the source', 'COPY s /x', { s: { link: 'HOST/secret.txt' } }],
    ['a wildcard below a symlink', 'COPY root/HOST/*.txt /x/', { root: { link: '/' } }],
    ['a wildcard matching a symlink', 'COPY s* /x/', { s1: { link: '/HOST/secret.txt' } }],
    ['a directory reached through a symlink', 'COPY root/HOST /x/', { root: { link: '/' } }],
    ['a symlinked directory as the source', 'COPY d /x/', { d: { link: '../../../../../../HOST' } }],
    ['ADD', 'ADD root/HOST/secret.txt /x', { root: { link: '/' } }],
    ['COPY --parents', 'COPY --parents root/HOST/secret.txt /x/', { root: { link: '/' } }],
    ['COPY --exclude', 'COPY --exclude=notes.log root/HOST/ /x/', { root: { link: '/' } }],
  ];
  for (const [what, instruction, files] of escapes) {
    it(`through ${what}: nothing of the host is copied`, async () => {
      const host = (text: string) => text.replace('HOST', hostDir.slice(1));
      const links = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, typeof v === 'string' ? v : { link: host(v.link) }]));
      const ctx = await context(`FROM scratch\nCOPY Dockerfile /keep\n${host(instruction)}\n`, links);
      if (instruction.includes('*')) {
        // A wildcard matching nothing copies nothing, as in BuildKit.
        expect(await contents(await buildFiles(ctx))).not.toContain(CANARY);
      } else {
        await expect(build(opts(ctx))).rejects.toThrow(/not found/);
      }
    });
  }

  it('follows symlinks that stay inside the context, for files, directories and their parents', async () => {
    const ctx = await context('FROM scratch\nCOPY link.txt /file.txt\nCOPY dirlink /d/\nCOPY abs/sub/b.txt /b.txt\nCOPY w*.txt /w/\n', {
      'real/a.txt': 'A\n',
      'real/sub/b.txt': 'B\n',
      'link.txt': { link: 'real/a.txt' },
      dirlink: { link: 'real' },
      // Absolute targets are taken inside the context, like inside a container.
      abs: { link: '/real' },
      'w1.txt': { link: '/real/a.txt' },
    });
    const fs = await buildFiles(ctx);
    expect(await readFile(join(fs, 'file.txt'), 'utf8')).toBe('A\n');
    expect((await readdir(join(fs, 'd'))).sort()).toEqual(['a.txt', 'sub']);
    expect(await readFile(join(fs, 'b.txt'), 'utf8')).toBe('B\n');
    expect(await readFile(join(fs, 'w/w1.txt'), 'utf8')).toBe('A\n');
  });

  it('keys the cache on what a symlink source points at, not on the link', async () => {
    const ctx = await context('FROM scratch\nCOPY link.txt /file.txt\n', { 'a.txt': 'one\n', 'link.txt': { link: 'a.txt' } });
    expect(await readFile(join(await buildFiles(ctx), 'file.txt'), 'utf8')).toBe('one\n');
    await writeFile(join(ctx, 'a.txt'), 'two\n');
    expect(await readFile(join(await buildFiles(ctx), 'file.txt'), 'utf8')).toBe('two\n');
  });

  it('a symlink to a file that .dockerignore excludes is not found, as the file is not in the context', async () => {
    const ctx = await context('FROM scratch\nCOPY link /x\n', { '.dockerignore': 'secret.txt\n', 'secret.txt': 'ignored\n', link: { link: 'secret.txt' } });
    await expect(build(opts(ctx))).rejects.toThrow(/failed to compute cache key: "\/link" not found/);
  });

  it('a named pipe given as a source is a clear error', async () => {
    const ctx = await context('FROM scratch\nCOPY fifo /x\n');
    const { spawnSync } = await import('node:child_process');
    expect(spawnSync('mkfifo', [join(ctx, 'fifo')]).status).toBe(0);
    await expect(build(opts(ctx))).rejects.toThrow(/"fifo" is not a regular file, directory or symlink/);
  });
});

describe('COPY --from a stage or an image never leaves that root', () => {
  it('a stage with RUN ln -s / /r cannot copy the host file', async () => {
    const ctx = await context(`FROM ${fx.base} AS evil\nRUN ln -s / /r && ln -s ../../../../.. /up\nFROM ${fx.base}\nCOPY --from=evil /r${hostDir}/secret.txt /x\n`);
    await expect(build(opts(ctx))).rejects.toThrow(/not found/);
    const up = await context(`FROM ${fx.base} AS evil\nRUN ln -s ../../../../.. /up\nFROM ${fx.base}\nCOPY --from=evil /up${hostDir}/ /x/\n`);
    await expect(build(opts(up))).rejects.toThrow(/not found/);
  });

  it('symlinks inside the stage are followed inside it', async () => {
    const ctx = await context(`FROM ${fx.base} AS stage\nRUN mkdir /data && echo inside > /data/f && ln -s /data /r\nFROM scratch\nCOPY --from=stage /r/f /x\nCOPY --from=stage /r/ /all/\n`);
    const fs = await buildFiles(ctx);
    expect(await readFile(join(fs, 'x'), 'utf8')).toBe('inside\n');
    expect(await readdir(join(fs, 'all'))).toEqual(['f']);
  });

  it('a base image whose layer holds a -> / cannot copy the host file', async () => {
    // The hostile image: one layer with the symlink, pushed to the registry.
    const evil = `${fx.registry.host}/evil:latest`;
    const ctx = await context('FROM scratch\nCOPY layer/ /\n', { 'layer/a': { link: '/' } });
    await build(opts(ctx, { tags: [evil], push: true }));
    const user = await context(`FROM scratch\nCOPY --from=${evil} /a${hostDir}/secret.txt /x\n`);
    await expect(build(opts(user, { root: join(fx.work, 'root-user') }))).rejects.toThrow(/not found/);
    expect(existsSync(join(fx.work, 'root-user'))).toBe(true);
  });
});

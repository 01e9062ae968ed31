// ADD and COPY options through the real solver, FROM scratch (no registry, no container):
// local tar archives (plain, gzip, bzip2, xz) are extracted, URLs downloaded from a local HTTP
// server (and verified with --checksum), COPY --exclude and --parents.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import type { ProgressEvent } from '../../src/progress.js';
import { unpackOciArchive } from '../helpers/oci-tar.js';
import { makeCertificates } from '../helpers/registry.js';

let work: string;
let server: Server;
let base: string;
let requests: string[];
let authorizations: string[];
const SECRET = 'pw-0f3e9c1d';
const BIN = Buffer.from('downloaded bytes\n');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'builder-add-'));
  requests = [];
  authorizations = [];
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    if (req.url?.startsWith('/private/')) authorizations.push(req.headers.authorization ?? '');
    if (req.url === '/private/file.txt' && req.headers.authorization === `Basic ${Buffer.from(`user:${SECRET}`).toString('base64')}`) {
      res.end('private\n');
    } else if (req.url === '/dl/file.bin') {
      res.setHeader('Last-Modified', 'Wed, 01 Jan 2020 00:00:00 GMT');
      res.end(BIN);
    } else if (req.url === '/dl/other.txt') res.end('other\n');
    else if (req.url === '/dl/moved') {
      res.statusCode = 302;
      res.setHeader('Location', '/dl/other.txt');
      res.end();
    } else {
      res.statusCode = 404;
      res.end('no');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  if (work) await rm(work, { recursive: true, force: true });
});

const unpackImage = (tarball: string, name: string) => unpackOciArchive(tarball, work, name);

describe('ADD and COPY options, built for real', () => {
  it('extracts local archives, downloads URLs, applies --exclude and --parents', async () => {
    const ctx = join(work, 'ctx');
    await mkdir(join(ctx, 'payload/sub'), { recursive: true });
    await writeFile(join(ctx, 'payload/a.txt'), 'A\n');
    await writeFile(join(ctx, 'payload/sub/b.txt'), 'B\n');
    expect(spawnSync('tar', ['-cf', join(ctx, 'plain.tar'), '-C', join(ctx, 'payload'), '.']).status).toBe(0);
    expect(spawnSync('tar', ['-czf', join(ctx, 'files.tar.gz'), '-C', join(ctx, 'payload'), '.']).status).toBe(0);
    const bz = has('bzip2');
    const xz = has('xz');
    if (bz) expect(spawnSync('tar', ['-cjf', join(ctx, 'files.tar.bz2'), '-C', join(ctx, 'payload'), '.']).status).toBe(0);
    if (xz) expect(spawnSync('tar', ['-cJf', join(ctx, 'files.tar.xz'), '-C', join(ctx, 'payload'), '.']).status).toBe(0);
    await writeFile(join(ctx, 'note.txt'), 'not an archive\n');
    await mkdir(join(ctx, 'tree/sub'), { recursive: true });
    await writeFile(join(ctx, 'tree/keep.txt'), 'keep\n');
    await writeFile(join(ctx, 'tree/drop.log'), 'drop\n');
    await writeFile(join(ctx, 'tree/sub/skip.txt'), 'skip\n');
    await writeFile(join(ctx, 'tree/sub/keep2.txt'), 'keep2\n');
    await mkdir(join(ctx, 'a/b'), { recursive: true });
    await writeFile(join(ctx, 'a/b/c.txt'), 'c\n');
    await writeFile(join(ctx, 'a/d.txt'), 'd\n');
    const sum = `sha256:${createHash('sha256').update(BIN).digest('hex')}`;
    await writeFile(
      join(ctx, 'Dockerfile'),
      [
        'FROM scratch',
        'ADD plain.tar /plain/',
        'ADD files.tar.gz /gz',
        ...(bz ? ['ADD files.tar.bz2 /bz2/'] : []),
        ...(xz ? ['ADD files.tar.xz /xz/'] : []),
        'ADD --unpack=false files.tar.gz /raw/',
        'ADD note.txt /txt/',
        `ADD --checksum=${sum} ${base}/dl/file.bin /dl/`,
        `ADD ${base}/dl/other.txt /named.txt`,
        `ADD ${base}/dl/moved /moved.txt`,
        'COPY --exclude=*.log --exclude=sub/skip.txt tree/ /ex/',
        'COPY --parents a/b/c.txt a/d.txt /par/',
        '',
      ].join('\n'),
    );
    const out = join(work, 'add.tar');
    const root = join(work, 'root');
    await build({ context: ctx, root, network: 'none', outputs: [{ type: 'oci', dest: out }], tags: ['add:test'] });
    const fs = await unpackImage(out, 'add');
    expect(await readFile(join(fs, 'plain/a.txt'), 'utf8')).toBe('A\n');
    expect(await readFile(join(fs, 'plain/sub/b.txt'), 'utf8')).toBe('B\n');
    expect(await readFile(join(fs, 'gz/sub/b.txt'), 'utf8')).toBe('B\n');
    if (bz) expect(await readFile(join(fs, 'bz2/a.txt'), 'utf8')).toBe('A\n');
    if (xz) expect(await readFile(join(fs, 'xz/a.txt'), 'utf8')).toBe('A\n');
    expect(await readdir(join(fs, 'raw'))).toEqual(['files.tar.gz']);
    expect(await readFile(join(fs, 'txt/note.txt'), 'utf8')).toBe('not an archive\n');
    expect(await readFile(join(fs, 'dl/file.bin'))).toEqual(BIN);
    const st = await lstat(join(fs, 'dl/file.bin'));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.mtime.toISOString()).toBe('2020-01-01T00:00:00.000Z');
    expect(await readFile(join(fs, 'named.txt'), 'utf8')).toBe('other\n');
    expect(await readFile(join(fs, 'moved.txt'), 'utf8')).toBe('other\n');
    expect((await readdir(join(fs, 'ex'))).sort()).toEqual(['keep.txt', 'sub']);
    expect(await readdir(join(fs, 'ex/sub'))).toEqual(['keep2.txt']);
    expect(await readFile(join(fs, 'par/a/b/c.txt'), 'utf8')).toBe('c\n');
    expect(await readFile(join(fs, 'par/a/d.txt'), 'utf8')).toBe('d\n');

    // Rebuilding: the checksummed download is a cache hit without any request.
    const before = requests.filter((r) => r === '/dl/file.bin').length;
    await build({ context: ctx, root, network: 'none' });
    expect(requests.filter((r) => r === '/dl/file.bin').length).toBe(before);
  });

  it('a download that does not match --checksum fails the step, naming both digests', async () => {
    const ctx = join(work, 'bad');
    await mkdir(ctx, { recursive: true });
    const wrong = `sha256:${'0'.repeat(64)}`;
    await writeFile(join(ctx, 'Dockerfile'), `FROM scratch\nADD --checksum=${wrong} ${base}/dl/file.bin /f\n`);
    await expect(build({ context: ctx, root: join(work, 'root-bad'), network: 'none' })).rejects.toThrow(/checksum mismatch .*expected sha256:0{64}, got sha256:[0-9a-f]{64}/);
  });

  it('a URL with credentials downloads with them, and progress, history and errors show user:***@', async () => {
    const ctx = join(work, 'creds');
    await mkdir(ctx, { recursive: true });
    const url = base.replace('http://', `http://user:${SECRET}@`);
    const shown = base.replace('http://', 'http://user:***@');
    await writeFile(join(ctx, 'Dockerfile'), `FROM scratch\nADD ${url}/private/file.txt /f\n`);
    const seen: ProgressEvent[] = [];
    const result = await build({ context: ctx, root: join(work, 'root-creds'), network: 'none', onProgress: (e) => seen.push(e) });
    expect(authorizations).toEqual([`Basic ${Buffer.from(`user:${SECRET}`).toString('base64')}`]);
    expect(JSON.stringify(seen)).not.toContain(SECRET);
    const names = seen.flatMap((e) => (e.type === 'step' && e.status === 'started' ? [e.name] : []));
    expect(names).toContain(`[internal] download ${shown}/private/file.txt`);
    expect(names).toContain(`[1/1] ADD ${shown}/private/file.txt /f`);
    expect(result.config.history?.at(-1)?.created_by).toBe(`ADD ${shown}/private/file.txt /f # buildkit`);
    expect(JSON.stringify(result.config)).not.toContain(SECRET);

    // A failed download names the URL without the password, in the error and in progress.
    await writeFile(join(ctx, 'Dockerfile'), `FROM scratch\nADD ${url}/private/missing.txt /f\n`);
    seen.length = 0;
    const err = (await build({ context: ctx, root: join(work, 'root-creds'), network: 'none', onProgress: (e) => seen.push(e) }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(`failed to download ${shown}/private/missing.txt: HTTP 404`);
    expect(`${err.message} ${String(err.stack)}`).not.toContain(SECRET);
    expect(JSON.stringify(seen)).not.toContain(SECRET);
    expect(seen.some((e) => e.type === 'step' && e.status === 'error' && e.error?.includes(`${shown}/private/missing.txt`))).toBe(true);
  });

  it('downloads over HTTPS trusting SSL_CERT_FILE (as BuildKit does), and refuses an unknown CA', async () => {
    const certs = join(work, 'certs');
    await mkdir(certs);
    const ca = makeCertificates(certs, 'localhost');
    const tls = createHttpsServer({ key: await readFile(join(certs, 'server.key')), cert: await readFile(join(certs, 'server.crt')) }, (_req, res) => res.end(BIN));
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    const ctx = join(work, 'https');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM scratch\nADD https://127.0.0.1:${(tls.address() as AddressInfo).port}/file.bin /f\n`);
    const saved = process.env.SSL_CERT_FILE;
    try {
      delete process.env.SSL_CERT_FILE;
      await expect(build({ context: ctx, root: join(work, 'root-https'), network: 'none' })).rejects.toThrow(/self.signed|certificate/i);
      process.env.SSL_CERT_FILE = ca;
      const out = join(work, 'https.tar');
      await build({ context: ctx, root: join(work, 'root-https'), network: 'none', outputs: [{ type: 'oci', dest: out }], tags: ['https:test'] });
      expect(await readFile(join(await unpackImage(out, 'https'), 'f'))).toEqual(BIN);
    } finally {
      if (saved === undefined) delete process.env.SSL_CERT_FILE;
      else process.env.SSL_CERT_FILE = saved;
      await new Promise((resolve) => tls.close(resolve));
    }
  });
});

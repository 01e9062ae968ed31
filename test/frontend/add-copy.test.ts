// COPY and ADD compile to file ops: ADD unpacks local archives and downloads URLs, --checksum is
// checked, COPY --from an image adds an image vertex, --exclude and --parents reach the action.
import { describe, expect, it } from 'vitest';
import type { CopyAction, FileOp, HttpOp } from '../../src/definition/index.js';
import { build, fakeResolver, ops, rejection } from './helpers.js';

const SUM = `sha256:${'ab'.repeat(32)}`;

function rootActions(r: Awaited<ReturnType<typeof build>>): CopyAction[] {
  return (r.definition.vertices.get(r.root)!.op as FileOp).actions as CopyAction[];
}

describe('ADD', () => {
  it('copies local sources with unpack set (archives are extracted by the solver)', async () => {
    const r = await build('FROM alpine:3.19\nADD rootfs.tar.xz /');
    expect(rootActions(r)).toEqual([{ action: 'copy', sourceInput: 1, src: ['rootfs.tar.xz'], dest: '/', unpack: true }]);
    expect(r.image.history.at(-1)!.created_by).toBe('ADD rootfs.tar.xz / # buildkit');
  });

  it('--unpack=false copies archives as they are', async () => {
    const r = await build('FROM alpine:3.19\nADD --unpack=false a.tar.gz /x/');
    expect(rootActions(r)[0]).not.toHaveProperty('unpack');
  });

  it('downloads a URL into an http vertex named after the URL path', async () => {
    const r = await build(`FROM alpine:3.19\nADD --checksum=${SUM} https://example.com/dl/tool-1.0.tgz /opt/`);
    const [http] = ops(r.definition, 'http') as HttpOp[];
    expect(http).toEqual({ type: 'http', url: 'https://example.com/dl/tool-1.0.tgz', filename: 'tool-1.0.tgz', checksum: SUM });
    expect(rootActions(r)).toEqual([{ action: 'copy', sourceInput: 1, src: ['tool-1.0.tgz'], dest: '/opt/' }]);
  });

  it('masks URL credentials in the step names and the history, and keeps them for the download', async () => {
    const r = await build('FROM alpine:3.19\nARG URL\nADD $URL https://tok@example.com/b.txt /opt/', {
      buildArgs: { URL: 'https://user:s3cret@example.com/a.txt' },
    });
    expect((ops(r.definition, 'http') as HttpOp[]).map((h) => h.url)).toEqual(['https://user:s3cret@example.com/a.txt', 'https://tok@example.com/b.txt']);
    const names = [...r.definition.vertices.values()].map((v) => v.meta.name).filter((n) => n.includes('download') || n.includes('ADD'));
    expect(names).toEqual([
      '[internal] download https://user:***@example.com/a.txt',
      '[internal] download https://***@example.com/b.txt',
      '[2/2] ADD $URL https://***@example.com/b.txt /opt/',
    ]);
    expect(r.image.history.at(-1)!.created_by).toBe('ADD https://user:***@example.com/a.txt https://***@example.com/b.txt /opt/ # buildkit');
    // An error quoting the line masks them too.
    const err = await rejection(build('FROM alpine:3.19\nADD --checksum=md5:x https://user:s3cret@example.com/a /a'));
    expect(String((err as { format?: () => string }).format?.())).toContain('https://user:***@example.com/a');
    expect(String((err as { format?: () => string }).format?.())).not.toContain('s3cret');
  });

  it('the checksum is part of the download vertex digest', async () => {
    const a = await build(`FROM alpine:3.19\nADD --checksum=${SUM} https://example.com/x /x`);
    const b = await build(`FROM alpine:3.19\nADD --checksum=sha256:${'cd'.repeat(32)} https://example.com/x /x`);
    expect(a.root).not.toBe(b.root);
  });

  it('refuses a malformed checksum, or one on local files', async () => {
    expect((await rejection(build('FROM alpine:3.19\nADD --checksum=md5:abc https://example.com/x /x'))).message).toMatch(
      /^Dockerfile:2: ADD --checksum=md5:abc: expected sha256:<64 hex digits>/,
    );
    expect((await rejection(build(`FROM alpine:3.19\nADD --checksum=${SUM} local.txt /x`))).message).toMatch(
      /^Dockerfile:2: ADD --checksum can only be used with a single HTTP\(S\) source/,
    );
  });

  it('COPY has no --checksum, ADD no --from', async () => {
    expect((await rejection(build(`FROM alpine:3.19\nCOPY --checksum=${SUM} a /a`))).message).toMatch(/COPY: unknown flag: --checksum/);
    expect((await rejection(build('FROM alpine:3.19\nADD --from=x a /a'))).message).toMatch(/ADD: unknown flag: --from/);
  });

  it('ADD takes heredocs too', async () => {
    const r = await build('FROM alpine:3.19\nADD <<EOF /etc/x\nhi\nEOF\n');
    expect(ops(r.definition, 'file').flatMap((op) => op.actions).some((a) => a.action === 'mkfile')).toBe(true);
  });
});

describe('COPY options', () => {
  it('--exclude and --parents reach the copy action', async () => {
    const r = await build('FROM alpine:3.19\nCOPY --parents --exclude=*.md --exclude=**/test src/ lib/ /app/');
    expect(rootActions(r)).toEqual([
      { action: 'copy', sourceInput: 1, src: ['src', 'lib'], dest: '/app/', exclude: ['*.md', '**/test'], parents: true },
    ]);
  });

  it('COPY --from=<image> copies from a resolved, pinned image vertex', async () => {
    const resolve = fakeResolver();
    const r = await build('FROM alpine:3.19\nCOPY --from=node:20 /usr/local/bin/node /usr/local/bin/', { resolveImage: resolve });
    expect(resolve.calls).toEqual(['alpine:3.19', 'node:20']);
    const root = r.definition.vertices.get(r.root)!;
    const source = r.definition.vertices.get(root.inputs[1]!)!;
    expect(source.op).toEqual({ type: 'image', ref: expect.stringMatching(/^docker\.io\/library\/node:20@sha256:[0-9a-f]{64}$/), platform: { os: 'linux', architecture: 'amd64' } });
  });
});

describe('COPY --from a stage defined later', () => {
  it('is allowed, as in BuildKit: stages compile in dependency order', async () => {
    const r = await build('FROM alpine:3.19 AS app\nCOPY --from=assets /out /srv\nFROM alpine:3.19 AS assets\nRUN mkdir /out', { target: 'app' });
    expect(r.stages.map((s) => s.name)).toEqual(['app', 'assets']);
    const root = r.definition.vertices.get(r.root)!;
    expect(root.inputs[1]).toBe(r.stages[1]!.root);
  });
});

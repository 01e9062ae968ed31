// The hostile and tricky layer corpus: every case is a layer applied on top of the same lower
// layer, under both snapshotters, with the outcome documented in test/snapshotter/README.md
// (the `id`s below are the rows of that table). After every case, nothing outside the
// snapshotter root has changed.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { getAttribute, listAttributes } from 'fs-xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, type Digest } from '../../src/oci/types.js';
import { DiffIDMismatchError, LayerSecurityError, applyLayer, createSnapshotter, withMounts, type LocalSnapshotter } from '../../src/snapshotter/index.js';
import { packTar } from '../../src/snapshotter/tar-writer.js';
import { devMajor, devMinor } from '../../src/snapshotter/fsutil.js';
import { makeTar, stream, tempDir, type TestEntry } from './helpers.js';

const kinds = ['overlayfs', 'native'] as const;

/**
 * Every case runs on the calling thread and through the writer thread that large layers get
 * (the compiled script: `npm run build` makes it), which must keep every rule alike.
 */
const WRITER_SCRIPT = new URL('../../dist/snapshotter/apply-worker.js', import.meta.url);
const writers = [
  { writer: 'this thread', writerScript: false },
  { writer: 'writer thread', writerScript: WRITER_SCRIPT },
] as const;
const variants = kinds.flatMap((kind) => writers.map((w) => ({ kind, ...w })));

/** Stands for the absolute path of the test's "outside" directory in entries. */
const OUTSIDE = '@outside@';

const LOWER: TestEntry[] = [
  { name: 'etc/', type: 'directory' },
  { name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
  { name: 'lower/', type: 'directory', mode: 0o750, uid: 5, gid: 6 },
  { name: 'lower/file', content: 'from the lower layer', mode: 0o640, uid: 5, gid: 6 },
  { name: 'dir/', type: 'directory' },
  { name: 'dir/sub/', type: 'directory' },
  { name: 'dir/sub/x', content: 'x' },
  { name: 'dir/y', content: 'y' },
  { name: 'ro/', type: 'directory', mode: 0o555 },
  { name: 'ro/old', content: 'old' },
  { name: 'evil', type: 'symlink', linkname: OUTSIDE },
  { name: 'up', type: 'symlink', linkname: '../../../..' },
];

/** security.capability for cap_net_bind_service+ep (VFS_CAP_REVISION_2): binary, with NULs. */
const CAP_NET_BIND = Buffer.from([1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
const SPARSE_SIZE = 64 * 1024 * 1024;
const LONG_DIR = `long/${'d'.repeat(120)}`;
const LONG_FILE = `${LONG_DIR}/${'f'.repeat(200)}`;
const LONG_TARGET = `${'t'.repeat(180)}/target`;

type Layer = { entries: TestEntry[] } | { raw: () => Buffer | Promise<Buffer> };
type Check = (root: string, ctx: { upper: string; lowerDir: string; kind: (typeof kinds)[number]; warnings: string[] }) => Promise<void>;

interface Case {
  id: string;
  layer: Layer;
  /** Rejected with a LayerSecurityError matching this, or applied and checked. */
  outcome: RegExp | Check;
}

const rawTar = packTar;

const T = 1_577_934_245; // the helpers' fixed mtime (2020-01-02T03:04:05Z)

const CASES: Case[] = [
  // --- path traversal -------------------------------------------------------------------------
  { id: 'dotdot', layer: { entries: [{ name: '../x', content: 'x' }] }, outcome: /"\.\.\/x".*escapes the root through "\.\."/ },
  { id: 'dotdot-inner', layer: { entries: [{ name: 'a/../../x', content: 'x' }] }, outcome: /"a\/\.\.\/\.\.\/x".*escapes the root/ },
  {
    id: 'absolute',
    layer: { entries: [{ name: '/abs/file', content: 'inside' }, { name: '/dir/../top', content: 't' }] },
    outcome: async (root) => {
      expect(await readFile(join(root, 'abs/file'), 'utf8')).toBe('inside');
      expect(await readFile(join(root, 'top'), 'utf8')).toBe('t');
    },
  },
  // --- symlink escapes ------------------------------------------------------------------------
  { id: 'symlink-parent-same-layer', layer: { entries: [{ name: 'ln', type: 'symlink', linkname: '/' }, { name: 'ln/tmp/pwned', content: 'x' }] }, outcome: /"ln\/tmp\/pwned".*parent directory "ln" is a symlink/ },
  { id: 'symlink-parent-lower-layer', layer: { entries: [{ name: 'evil/pwned', content: 'x' }] }, outcome: /"evil\/pwned".*"evil" is a symlink/ },
  { id: 'symlink-parent-relative', layer: { entries: [{ name: 'up/x', content: 'x' }] }, outcome: /"up\/x".*"up" is a symlink/ },
  { id: 'whiteout-through-symlink', layer: { entries: [{ name: 'evil/.wh.secret' }] }, outcome: /"evil\/\.wh\.secret".*symlink/ },
  {
    id: 'symlink-to-outside',
    layer: { entries: [{ name: 'out', type: 'symlink', linkname: OUTSIDE }, { name: 'rel', type: 'symlink', linkname: '../../../../etc/shadow' }] },
    outcome: async (root) => {
      // Stored as symlinks, never followed by the applier.
      expect(await readlink(join(root, 'rel'))).toBe('../../../../etc/shadow');
      expect((await lstat(join(root, 'out'))).isSymbolicLink()).toBe(true);
    },
  },
  {
    id: 'symlink-then-file',
    layer: { entries: [{ name: 's', type: 'symlink', linkname: `${OUTSIDE}/secret` }, { name: 's', content: 'replaced' }, { name: 'evil', content: 'now a file' }] },
    outcome: async (root) => {
      expect(await readFile(join(root, 's'), 'utf8')).toBe('replaced');
      expect(await readFile(join(root, 'evil'), 'utf8')).toBe('now a file');
    },
  },
  // --- hardlinks ------------------------------------------------------------------------------
  { id: 'hardlink-dotdot', layer: { entries: [{ name: 'hl', type: 'link', linkname: '../../outside/secret' }] }, outcome: /"hl".*hardlink target.*escapes the root/ },
  { id: 'hardlink-through-symlink', layer: { entries: [{ name: 'lnk', type: 'symlink', linkname: OUTSIDE }, { name: 'hl', type: 'link', linkname: 'lnk/secret' }] }, outcome: /"hl".*symlink "lnk"/ },
  { id: 'hardlink-through-lower-symlink', layer: { entries: [{ name: 'hl', type: 'link', linkname: 'evil/secret' }] }, outcome: /"hl".*symlink "evil"/ },
  { id: 'hardlink-missing', layer: { entries: [{ name: 'hl', type: 'link', linkname: 'nothing' }] }, outcome: /"hl".*"nothing" does not exist/ },
  { id: 'hardlink-to-whiteout', layer: { entries: [{ name: 'dir/.wh.y' }, { name: 'hl', type: 'link', linkname: 'dir/y' }] }, outcome: /"hl".*"dir\/y" does not exist/ },
  { id: 'hardlink-to-dir', layer: { entries: [{ name: 'hl', type: 'link', linkname: 'lower' }] }, outcome: /"hl".*"lower" is a directory/ },
  {
    id: 'hardlink-same-layer',
    layer: { entries: [{ name: 'a', content: 'shared' }, { name: 'b', type: 'link', linkname: 'a' }] },
    outcome: async (root) => {
      const [a, b] = [await stat(join(root, 'a')), await stat(join(root, 'b'))];
      expect(b.ino).toBe(a.ino);
      expect(a.nlink).toBe(2);
    },
  },
  {
    id: 'hardlink-to-lower-layer',
    layer: { entries: [{ name: 'newdir/hl', type: 'link', linkname: 'lower/file' }] },
    outcome: async (root, { upper, lowerDir, kind }) => {
      expect(await readFile(join(root, 'newdir/hl'), 'utf8')).toBe('from the lower layer');
      const [hl, orig] = [await stat(join(root, 'newdir/hl')), await stat(join(root, 'lower/file'))];
      expect(hl.ino).toBe(orig.ino);
      expect(hl.nlink).toBe(2);
      expect([orig.mode & 0o7777, orig.uid, orig.gid, orig.mtimeMs / 1000]).toEqual([0o640, 5, 6, T]);
      const parent = await stat(join(root, 'lower'));
      expect([parent.mode & 0o7777, parent.uid, parent.gid]).toEqual([0o750, 5, 6]);
      // The lower layer itself is untouched.
      expect((await stat(join(lowerDir, 'lower/file'))).nlink).toBe(1);
      if (kind === 'overlayfs') expect((await readdir(upper)).sort()).toEqual(['lower', 'newdir']);
    },
  },
  {
    id: 'hardlink-long-names',
    layer: {
      entries: [
        { name: `${LONG_TARGET}`, content: 'long target' },
        { name: LONG_FILE, type: 'link', linkname: LONG_TARGET },
      ],
    },
    outcome: async (root) => {
      expect((await stat(join(root, LONG_FILE))).ino).toBe((await stat(join(root, LONG_TARGET))).ino);
    },
  },
  // --- whiteouts and opaque dirs ----------------------------------------------------------------
  {
    id: 'whiteout-of-a-parent',
    layer: { entries: [{ name: '.wh.dir' }] },
    outcome: async (root) => {
      expect((await readdir(root)).includes('dir')).toBe(false);
    },
  },
  {
    id: 'whiteout-parent-then-recreate',
    layer: { entries: [{ name: '.wh.dir' }, { name: 'dir/new', content: 'n' }] },
    outcome: async (root) => {
      expect(await readdir(join(root, 'dir'))).toEqual(['new']);
    },
  },
  {
    id: 'whiteout-child-of-whited-out-parent',
    layer: { entries: [{ name: '.wh.dir' }, { name: 'dir/.wh.y' }] },
    outcome: async (root) => {
      // The parent is gone in the merged view; the child's whiteout changes nothing visible.
      const left = await readdir(join(root, 'dir')).catch(() => []);
      expect(left).toEqual([]);
    },
  },
  { id: 'whiteout-dotdot', layer: { entries: [{ name: 'dir/.wh..' }] }, outcome: /"dir\/\.wh\.\.".*whiteout of "\." or "\.\."/ },
  {
    id: 'whiteout-missing',
    layer: { entries: [{ name: 'nowhere/.wh.nothing' }, { name: '.wh.ghost' }] },
    outcome: async (root) => {
      expect(await readFile(join(root, 'etc/passwd'), 'utf8')).toContain('root');
      expect((await readdir(root)).includes('ghost')).toBe(false);
    },
  },
  {
    id: 'opaque-over-lower-dir',
    layer: { entries: [{ name: 'dir/', type: 'directory', mode: 0o711 }, { name: 'dir/.wh..wh..opq' }, { name: 'dir/new', content: 'n' }] },
    outcome: async (root) => {
      expect(await readdir(join(root, 'dir'))).toEqual(['new']);
      expect((await stat(join(root, 'dir'))).mode & 0o7777).toBe(0o711);
    },
  },
  {
    // overlayfs merges the layers' root directories whatever their opaque xattr; native follows it.
    id: 'opaque-root',
    layer: { entries: [{ name: './', type: 'directory' }, { name: './.wh..wh..opq' }, { name: './added', content: 'a' }] },
    outcome: async (root) => {
      expect((await readdir(root)).sort()).toEqual(['added', 'dir', 'etc', 'evil', 'lower', 'ro', 'up']);
      expect(await readFile(join(root, 'etc/passwd'), 'utf8')).toBe('root:x:0:0:root:/root:/bin/sh\n');
    },
  },
  {
    id: 'dir-replaced-by-file-and-back',
    layer: { entries: [{ name: 'dir', content: 'now a file' }, { name: 'etc/passwd/', type: 'directory' }, { name: 'etc/passwd/x', content: 'x' }] },
    outcome: async (root) => {
      expect(await readFile(join(root, 'dir'), 'utf8')).toBe('now a file');
      expect(await readdir(join(root, 'etc/passwd'))).toEqual(['x']);
    },
  },
  {
    id: 'overlay-xattr-smuggling',
    layer: {
      entries: [
        { name: 'dir/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'SCHILY.xattr.trusted.overlay.redirect': '/etc' } },
      ],
    },
    outcome: async (root, { warnings }) => {
      // Reserved for overlayfs: dropped with a warning; the lower contents still show.
      expect((await readdir(join(root, 'dir'))).sort()).toEqual(['sub', 'y']);
      expect(warnings.join('\n')).toMatch(/trusted\.overlay\.opaque.*reserved for overlayfs/);
    },
  },
  // --- modes, owners, special files -----------------------------------------------------------
  {
    id: 'setuid-binary',
    layer: {
      entries: [
        { name: 'bin/su', content: '#!/bin/sh\n', mode: 0o4755 },
        { name: 'bin/app', content: 'app', mode: 0o6750, uid: 1000, gid: 50 },
        { name: 'shared/', type: 'directory', mode: 0o3777 },
      ],
    },
    outcome: async (root) => {
      const su = await stat(join(root, 'bin/su'));
      expect([su.mode & 0o7777, su.uid]).toEqual([0o4755, 0]);
      const app = await stat(join(root, 'bin/app'));
      expect([app.mode & 0o7777, app.uid, app.gid]).toEqual([0o6750, 1000, 50]);
      expect((await stat(join(root, 'shared'))).mode & 0o7777).toBe(0o3777);
    },
  },
  {
    id: 'unwritable-dirs',
    layer: {
      // Our own tar writer: tar-stream turns mode 0 into 0755.
      raw: () =>
        rawTar([
          { name: 'ro/new', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: T, size: 0 },
          { name: 'locked', type: 'dir', mode: 0o000, uid: 0, gid: 0, mtime: T, size: 0 },
          { name: 'locked/inner', type: 'dir', mode: 0o500, uid: 1000, gid: 0, mtime: T, size: 0 },
          { name: 'locked/inner/f', type: 'file', mode: 0o000, uid: 0, gid: 0, mtime: T, size: 0 },
        ]),
    },
    outcome: async (root) => {
      expect((await readdir(join(root, 'ro'))).sort()).toEqual(['new', 'old']);
      expect((await stat(join(root, 'ro'))).mode & 0o7777).toBe(0o555);
      expect((await stat(join(root, 'locked'))).mode & 0o7777).toBe(0o000);
      expect((await stat(join(root, 'locked/inner'))).mode & 0o7777).toBe(0o500);
      expect((await stat(join(root, 'locked/inner/f'))).mode & 0o7777).toBe(0o000);
    },
  },
  {
    id: 'devices-and-fifos',
    layer: {
      raw: () =>
        rawTar([
          { name: 'dev', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T, size: 0 },
          { name: 'dev/null', type: 'char', mode: 0o666, uid: 0, gid: 0, mtime: T, size: 0, devmajor: 1, devminor: 3 },
          { name: 'dev/loop9', type: 'block', mode: 0o660, uid: 0, gid: 6, mtime: T, size: 0, devmajor: 7, devminor: 9 },
          { name: 'fifo', type: 'fifo', mode: 0o600, uid: 0, gid: 0, mtime: T, size: 0 },
          // A minor number past 8 bits and a major past 8 bits (NVMe-style): both halves of dev_t.
          { name: 'dev/nvme', type: 'block', mode: 0o600, uid: 0, gid: 0, mtime: T, size: 0, devmajor: 259, devminor: 0x12345 },
        ]),
    },
    outcome: async (root) => {
      const nul = await lstat(join(root, 'dev/null'));
      expect(nul.isCharacterDevice()).toBe(true);
      expect(nul.rdev).toBe(0x103);
      expect(nul.mode & 0o7777).toBe(0o666);
      const loop = await lstat(join(root, 'dev/loop9'));
      expect([loop.isBlockDevice(), loop.gid]).toEqual([true, 6]);
      expect((await lstat(join(root, 'fifo'))).isFIFO()).toBe(true);
      const nvme = await lstat(join(root, 'dev/nvme'));
      expect([nvme.isBlockDevice(), devMajor(nvme.rdev), devMinor(nvme.rdev)]).toEqual([true, 259, 0x12345]);
    },
  },
  {
    id: 'xattrs-and-file-capabilities',
    layer: {
      raw: () =>
        rawTar([
          { name: 'ping', type: 'file', mode: 0o755, uid: 0, gid: 0, mtime: T, size: 0, xattrs: [['security.capability', CAP_NET_BIND], ['user.bin', Buffer.from([0, 1, 255])]] },
        ]),
    },
    outcome: async (root) => {
      expect(await getAttribute(join(root, 'ping'), 'security.capability')).toEqual(CAP_NET_BIND);
      expect(await getAttribute(join(root, 'ping'), 'user.bin')).toEqual(Buffer.from([0, 1, 255]));
      expect((await listAttributes(join(root, 'ping'))).filter((n) => n.startsWith('trusted.'))).toEqual([]);
    },
  },
  // --- names and sizes --------------------------------------------------------------------------
  {
    id: 'pax-long-names',
    layer: { entries: [{ name: `${LONG_FILE}`, content: 'long' }, { name: 'longlink', type: 'symlink', linkname: `/${LONG_FILE}` }, { name: `ünï/cödé-${'é'.repeat(60)}`, content: 'utf8' }] },
    outcome: async (root) => {
      expect(await readFile(join(root, LONG_FILE), 'utf8')).toBe('long');
      expect(await readlink(join(root, 'longlink'))).toBe(`/${LONG_FILE}`);
      expect(await readFile(join(root, `ünï/cödé-${'é'.repeat(60)}`), 'utf8')).toBe('utf8');
    },
  },
  {
    id: 'zero-byte-file',
    layer: { entries: [{ name: 'empty', content: '' }, { name: 'etc/passwd', content: '' }] },
    outcome: async (root) => {
      expect((await stat(join(root, 'empty'))).size).toBe(0);
      expect((await stat(join(root, 'etc/passwd'))).size).toBe(0);
    },
  },
  {
    id: 'huge-sparse-file',
    layer: {
      raw: async () => {
        const content = Buffer.alloc(SPARSE_SIZE);
        content.write('start', 0);
        content.write('end', SPARSE_SIZE - 3);
        return makeTar([{ name: 'sparse', content }]);
      },
    },
    outcome: async (root) => {
      const st = await stat(join(root, 'sparse'));
      expect(st.size).toBe(SPARSE_SIZE);
      // Zero runs were written as holes: far less than 64 MiB is allocated.
      expect(st.blocks * 512).toBeLessThan(1024 * 1024);
      const fd = await readFile(join(root, 'sparse'));
      expect(fd.subarray(0, 5).toString()).toBe('start');
      expect(fd.subarray(SPARSE_SIZE - 3).toString()).toBe('end');
    },
  },
  {
    id: 'duplicate-entries',
    layer: { entries: [{ name: 'dup', content: 'first' }, { name: 'dup', content: 'second', mode: 0o600 }, { name: 'd2/', type: 'directory', mode: 0o700 }, { name: 'd2/', type: 'directory', mode: 0o755 }] },
    outcome: async (root) => {
      expect(await readFile(join(root, 'dup'), 'utf8')).toBe('second');
      expect((await stat(join(root, 'dup'))).mode & 0o7777).toBe(0o600);
      expect((await stat(join(root, 'd2'))).mode & 0o7777).toBe(0o755);
    },
  },
];

describe.each(variants)('layer corpus ($kind, $writer)', ({ kind, writerScript }) => {
  let dir: { path: string; cleanup(): Promise<void> };
  let sn: LocalSnapshotter;
  let outside: string;
  const resolveOutside = (e: TestEntry): TestEntry => (e.linkname?.startsWith(OUTSIDE) ? { ...e, linkname: outside + e.linkname.slice(OUTSIDE.length) } : e);

  beforeAll(async () => {
    // A missing script would quietly apply on this thread: these cases would test nothing new.
    if (writerScript) expect(existsSync(fileURLToPath(writerScript)), 'run npm run build first').toBe(true);
    dir = await tempDir(`builder-corpus-${kind}-`);
    outside = join(dir.path, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret'), 'keep me');
    sn = await createSnapshotter(join(dir.path, 'root'), kind);
    await sn.prepare('x');
    await applyLayer(await sn.layout('x'), stream(gzipSync(await makeTar(LOWER.map(resolveOutside)))), MediaType.OciLayerGzip);
    await sn.commit('L1', 'x');
  });
  afterAll(async () => {
    await dir.cleanup();
  });

  async function outsideUntouched(): Promise<void> {
    expect(await readdir(outside)).toEqual(['secret']);
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('keep me');
    expect((await readdir(dir.path)).sort()).toEqual(['outside', 'root']);
  }

  it.each(CASES.map((c) => [c.id, c] as const))('%s', async (id, c) => {
    const tarBytes = 'raw' in c.layer ? await c.layer.raw() : await makeTar(c.layer.entries.map(resolveOutside));
    const key = `case-${id}`;
    await sn.prepare(key, 'L1');
    const warnings: string[] = [];
    const applied = applyLayer(await sn.layout(key), stream(gzipSync(tarBytes)), MediaType.OciLayerGzip, { onWarning: (w) => warnings.push(w), layerName: `corpus/${id}`, writerScript });
    try {
      if (c.outcome instanceof RegExp) {
        const err = await applied.then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(LayerSecurityError);
        expect((err as Error).message).toMatch(c.outcome);
        // The error names the layer and the entry.
        expect((err as Error).message).toMatch(new RegExp(`^layer corpus/${id}: refusing layer entry "`));
        return;
      }
      const { diffID } = await applied;
      expect(diffID).toBe(`sha256:${createHash('sha256').update(tarBytes).digest('hex')}`);
      await sn.commit(`L2-${id}`, key);
      const upper = (await sn.layout(`L2-${id}`)).dir;
      const lowerDir = (await sn.layout('L1')).dir;
      await withMounts(await sn.view(`v-${id}`, `L2-${id}`), (root) => (c.outcome as Check)(root, { upper, lowerDir, kind, warnings }));
      await sn.remove(`v-${id}`);
    } finally {
      await outsideUntouched();
    }
  });

  it('checks the uncompressed digest against the diff_id', async () => {
    const tarBytes = await makeTar([{ name: 'a', content: 'a' }]);
    const good = `sha256:${createHash('sha256').update(tarBytes).digest('hex')}` as Digest;
    await sn.prepare('digest-ok', 'L1');
    expect((await applyLayer(await sn.layout('digest-ok'), stream(gzipSync(tarBytes)), MediaType.OciLayerGzip, { diffID: good, writerScript })).diffID).toBe(good);
    await sn.prepare('digest-bad', 'L1');
    const wrong = `sha256:${'0'.repeat(64)}` as Digest;
    const err = await applyLayer(await sn.layout('digest-bad'), stream(gzipSync(tarBytes)), MediaType.OciLayerGzip, { diffID: wrong, layerName: 'sha256:abc', writerScript }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DiffIDMismatchError);
    expect((err as Error).message).toBe(`layer sha256:abc: uncompressed digest ${good} does not match diff_id ${wrong}`);
  });

  it('names a content-store blob by its digest in errors', async () => {
    const blob = gzipSync(await makeTar([{ name: '../escape', content: 'x' }]));
    const hex = createHash('sha256').update(blob).digest('hex');
    const blobDir = join(dir.path, 'root', 'blobs-test', 'sha256');
    await mkdir(blobDir, { recursive: true });
    await writeFile(join(blobDir, hex), blob);
    const { createReadStream } = await import('node:fs');
    await sn.prepare('named', 'L1');
    const err = await applyLayer(await sn.layout('named'), createReadStream(join(blobDir, hex)), MediaType.OciLayerGzip, { writerScript }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`layer sha256:${hex}: refusing layer entry "../escape": path "../escape" escapes the root through ".."`);
  });
});

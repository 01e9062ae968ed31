import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { lstat, mkdir, readFile, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { getAttribute } from 'fs-xattr';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LayerSecurityError, applyLayer, createSnapshotter, holdLayerWriter, withMounts, type LocalSnapshotter } from '../../src/snapshotter/index.js';
import { MediaType } from '../../src/oci/types.js';
import { Applier } from '../../src/snapshotter/apply-entries.js';
import { layerEntryOf, readLayerEntries, type LayerEntry } from '../../src/snapshotter/layer-reader.js';
import { makeLayer, makeTar, stream, tempDir, type TestEntry } from './helpers.js';

const kinds = ['overlayfs', 'native'] as const;
const T = new Date('2020-01-02T03:04:05Z').getTime() / 1000;

const baseLayer: TestEntry[] = [
  { name: 'etc/', type: 'directory' },
  { name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
  { name: 'etc/gone', content: 'to be whited out' },
  { name: 'opq/', type: 'directory', mode: 0o700 },
  { name: 'opq/old1', content: 'old' },
  { name: 'opq/sub/', type: 'directory' },
  { name: 'opq/sub/old2', content: 'old' },
  { name: 'keep/', type: 'directory' },
  { name: 'keep/a', content: 'a' },
  { name: 'lib/', type: 'directory', mode: 0o711, uid: 7, gid: 8 },
  { name: 'lib/x', content: 'x' },
];

const longName = `data/${'n'.repeat(150)}`;
/** Stands for the test's "outside" directory in hostile entries. */
const outsidePlaceholder = '@outside@';

const topLayer: TestEntry[] = [
  { name: 'etc/', type: 'directory' },
  { name: 'etc/.wh.gone' },
  { name: 'opq/', type: 'directory', mode: 0o755 },
  { name: 'opq/.wh..wh..opq' },
  { name: 'opq/new', content: 'new' },
  { name: 'keep/.wh.a' },
  { name: 'data/', type: 'directory', mode: 0o750, uid: 1000, gid: 1000 },
  { name: 'data/file', content: 'hello', mode: 0o640, uid: 1000, gid: 1001, pax: { 'SCHILY.xattr.user.test': 'xattr-value' } },
  { name: 'data/exec', content: '#!/bin/sh\n', mode: 0o4755 },
  { name: 'data/link', type: 'symlink', linkname: 'file' },
  { name: 'data/hard', type: 'link', linkname: 'data/file' },
  { name: longName, content: 'long' },
  { name: 'lib/added', content: 'implicit parent keeps lower attrs' },
  { name: 'implicit/deep/file', content: 'no parent entries' },
];

describe.each(kinds)('applyLayer (%s)', (kind) => {
  let dir: { path: string; cleanup(): Promise<void> };
  let sn: LocalSnapshotter;

  beforeEach(async () => {
    dir = await tempDir(`builder-apply-${kind}-`);
    sn = await createSnapshotter(join(dir.path, 'root'), kind);
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  async function commitLayer(name: string, parent: string | undefined, entries: TestEntry[]): Promise<void> {
    const key = `extract-${name}`;
    await sn.prepare(key, parent);
    await applyLayer(await sn.layout(key), stream(await makeLayer(entries)), MediaType.OciLayerGzip);
    await sn.commit(name, key);
  }

  it('applies files, dirs, links, whiteouts and opaque dirs', async () => {
    await commitLayer('L1', undefined, baseLayer);
    await sn.prepare('x2', 'L1');
    const tarBytes = await makeTar(topLayer);
    const { diffID } = await applyLayer(await sn.layout('x2'), stream(await makeLayer(topLayer)), MediaType.OciLayerGzip);
    expect(diffID).toBe(`sha256:${createHash('sha256').update(tarBytes).digest('hex')}`);
    await sn.commit('L2', 'x2');

    if (kind === 'overlayfs') {
      const upper = (await sn.layout('L2')).dir;
      const wh = await lstat(join(upper, 'etc', 'gone'));
      expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
      expect((await getAttribute(join(upper, 'opq'), 'trusted.overlay.opaque')).toString()).toBe('y');
    }

    await withMounts(await sn.view('v', 'L2'), async (d) => {
      expect(await readFile(join(d, 'etc/passwd'), 'utf8')).toContain('root');
      expect((await readdir(join(d, 'etc'))).sort()).toEqual(['passwd']);
      expect(await readdir(join(d, 'opq'))).toEqual(['new']);
      expect((await stat(join(d, 'opq'))).mode & 0o7777).toBe(0o755);
      expect(await readdir(join(d, 'keep'))).toEqual([]);

      const file = await stat(join(d, 'data/file'));
      expect(await readFile(join(d, 'data/file'), 'utf8')).toBe('hello');
      expect([file.mode & 0o7777, file.uid, file.gid]).toEqual([0o640, 1000, 1001]);
      expect(file.mtimeMs / 1000).toBe(T);
      expect((await getAttribute(join(d, 'data/file'), 'user.test')).toString()).toBe('xattr-value');
      const data = await stat(join(d, 'data'));
      expect([data.mode & 0o7777, data.uid, data.gid, data.mtimeMs / 1000]).toEqual([0o750, 1000, 1000, T]);
      expect((await stat(join(d, 'data/exec'))).mode & 0o7777).toBe(0o4755);
      expect(await readlink(join(d, 'data/link'))).toBe('file');
      expect((await stat(join(d, 'data/hard'))).ino).toBe(file.ino);
      expect(file.nlink).toBe(2);
      expect(await readFile(join(d, longName), 'utf8')).toBe('long');
      const lib = await stat(join(d, 'lib'));
      expect([lib.mode & 0o7777, lib.uid, lib.gid]).toEqual([0o711, 7, 8]);
      expect((await readdir(join(d, 'lib'))).sort()).toEqual(['added', 'x']);
      expect(await readFile(join(d, 'implicit/deep/file'), 'utf8')).toBe('no parent entries');
      expect((await stat(join(d, 'implicit'))).mode & 0o7777).toBe(0o755);
    });
  });

  it.each([
    ['opaque marker after the new entries', [{ name: 'opq/new', content: 'n' }, { name: 'opq/.wh..wh..opq' }]],
    ['whiteout then a new dir of the same name', [{ name: '.wh.opq' }, { name: 'opq/', type: 'directory' }, { name: 'opq/new', content: 'n' }]],
    ['new dir then its whiteout', [{ name: 'opq/', type: 'directory' }, { name: 'opq/new', content: 'n' }, { name: '.wh.opq' }]],
  ] as Array<[string, TestEntry[]]>)('hides only lower content: %s', async (_label, entries) => {
    await commitLayer('L1', undefined, baseLayer);
    await commitLayer('L2', 'L1', entries);
    await withMounts(await sn.view('v', 'L2'), async (d) => {
      expect(await readdir(join(d, 'opq'))).toEqual(['new']);
    });
  });

  it("gives files exactly their entry's owner, mode and time, whatever the umask or a setgid parent would make of them", async () => {
    const layer: TestEntry[] = [
      { name: 'shared/', type: 'directory', mode: 0o2775, gid: 50 },
      { name: 'shared/root-owned', content: 'r', mode: 0o644 },
      { name: 'shared/writable', content: 'w', mode: 0o666, uid: 0, gid: 0 },
      { name: 'open', content: 'o', mode: 0o777 },
      { name: 'read-only', content: 'n', mode: 0o400, uid: 33, gid: 33 },
      { name: 'open', content: 'replaced', mode: 0o2751, uid: 5, gid: 6 },
    ];
    await commitLayer('L', undefined, layer);
    const root = (await sn.layout('L')).dir;
    const attrs = async (rel: string): Promise<[number, number, number, number]> => {
      const st = await lstat(join(root, rel));
      return [st.mode & 0o7777, st.uid, st.gid, st.mtimeMs / 1000];
    };
    expect(await attrs('shared/root-owned')).toEqual([0o644, 0, 0, T]);
    expect(await attrs('shared/writable')).toEqual([0o666, 0, 0, T]);
    expect(await attrs('read-only')).toEqual([0o400, 33, 33, T]);
    expect(await attrs('open')).toEqual([0o2751, 5, 6, T]);
    expect(await readFile(join(root, 'open'), 'utf8')).toBe('replaced');
  });

  it('applies entries in layer order when later entries reuse, replace, link or descend into names just written', async () => {
    const many: TestEntry[] = Array.from({ length: 40 }, (_, i) => ({ name: `d/f${i}`, content: `first ${i}` }));
    await commitLayer('L1', undefined, [
      { name: 'old/', type: 'directory' },
      { name: 'old/inner', content: 'lower' },
    ]);
    await commitLayer('L2', 'L1', [
      { name: 'd/', type: 'directory' },
      ...many,
      { name: 'd/f3', content: 'second 3', mode: 0o600 },
      { name: 'd/hard', type: 'link', linkname: 'd/f39' },
      { name: 'd/f38', type: 'symlink', linkname: 'f0' },
      { name: 'x', content: 'a file first' },
      { name: 'x/', type: 'directory' },
      { name: 'x/child', content: 'then a dir' },
      { name: 'y/', type: 'directory' },
      { name: 'y/child', content: 'a dir first' },
      { name: 'y', content: 'then a file' },
      { name: 'old', content: 'a file over a lower dir' },
      { name: 'last', content: 'end' },
    ]);
    await withMounts(await sn.view('v', 'L2'), async (root) => {
      expect(await readFile(join(root, 'd/f0'), 'utf8')).toBe('first 0');
      expect(await readFile(join(root, 'd/f37'), 'utf8')).toBe('first 37');
      expect(await readFile(join(root, 'd/f3'), 'utf8')).toBe('second 3');
      expect((await stat(join(root, 'd/f3'))).mode & 0o7777).toBe(0o600);
      expect((await stat(join(root, 'd/hard'))).ino).toBe((await stat(join(root, 'd/f39'))).ino);
      expect(await readlink(join(root, 'd/f38'))).toBe('f0');
      expect(await readFile(join(root, 'x/child'), 'utf8')).toBe('then a dir');
      expect(await readFile(join(root, 'y'), 'utf8')).toBe('then a file');
      expect(await readFile(join(root, 'old'), 'utf8')).toBe('a file over a lower dir');
      expect(await readFile(join(root, 'last'), 'utf8')).toBe('end');
      expect((await readdir(join(root, 'd'))).length).toBe(41);
      expect((await stat(join(root, 'd/f20'))).mtimeMs / 1000).toBe(T);
    });
  });

  it.each([
    ['in the middle of the layer', [{ name: 'a', content: 'a' }, { name: 'n'.repeat(300), content: 'x' }, { name: 'b', content: 'b' }, { name: 'c/', type: 'directory' }]],
    ['as its last entry', [{ name: 'a', content: 'a' }, { name: 'n'.repeat(300), content: 'x' }]],
  ] as Array<[string, TestEntry[]]>)('fails with the error of a file it cannot create %s', async (_label, entries) => {
    await sn.prepare('long');
    const err = await applyLayer(await sn.layout('long'), stream(await makeLayer(entries)), MediaType.OciLayerGzip).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as NodeJS.ErrnoException | undefined)?.code).toBe('ENAMETOOLONG');
  });

  it('tells the disk use of a layer written into an empty tree, as a walk of it finds, and none once the layer removes something', async () => {
    const entries: TestEntry[] = [
      ...baseLayer,
      ...topLayer.filter((e) => !e.name.includes('.wh.') && !e.name.startsWith('lib/')),
      { name: 'big', content: Buffer.alloc(300_000, 'b') },
      { name: 'sparse', content: Buffer.concat([Buffer.from('start'), Buffer.alloc(1 << 20), Buffer.from('end')]) },
      { name: 'pipe', type: 'fifo' },
    ];
    await sn.prepare('counted');
    const { usage } = await applyLayer(await sn.layout('counted'), stream(await makeLayer(entries)), MediaType.OciLayerGzip);
    expect(usage).toEqual(await sn.usage('counted'));
    // The root, 11 of the base layer, opq/new, data/ and 4 inodes in it (its hardlink adds
    // none), implicit/, implicit/deep/ and its file, and the last 3.
    expect(usage?.inodes).toBe(24);
    await sn.commit('L1', 'counted');
    await sn.prepare('removes', 'L1');
    expect((await applyLayer(await sn.layout('removes'), stream(await makeLayer(topLayer)), MediaType.OciLayerGzip)).usage).toBeUndefined();
  });

  it('reads plain tar and zstd layers', async () => {
    const tarBytes = await makeTar([{ name: 'a.txt', content: 'plain' }]);
    await sn.prepare('p');
    const plain = await applyLayer(await sn.layout('p'), stream(tarBytes), MediaType.OciLayer);
    expect(plain.diffID).toBe(`sha256:${createHash('sha256').update(tarBytes).digest('hex')}`);
    expect(await readFile(join((await sn.layout('p')).dir, 'a.txt'), 'utf8')).toBe('plain');

    const zst = execFileSync('zstd', ['-q', '-c'], { input: tarBytes });
    await sn.prepare('z');
    const z = await applyLayer(await sn.layout('z'), stream(zst), MediaType.OciLayerZstd);
    expect(z.diffID).toBe(plain.diffID);
    expect(await readFile(join((await sn.layout('z')).dir, 'a.txt'), 'utf8')).toBe('plain');
  });

  it('rejects a corrupt layer', async () => {
    await sn.prepare('c');
    const good = await makeLayer([{ name: 'a.txt', content: 'x'.repeat(10000) }]);
    const bad = Buffer.concat([good.subarray(0, 30), Buffer.alloc(40, 7), good.subarray(70)]);
    await expect(applyLayer(await sn.layout('c'), stream(bad), MediaType.OciLayerGzip)).rejects.toThrow();
  });

  describe('hostile layers', () => {
    let outside: string;

    beforeEach(async () => {
      outside = join(dir.path, 'outside');
      await mkdir(outside);
      await writeFile(join(outside, 'secret'), 'keep me');
      await commitLayer('L1', undefined, [
        { name: 'evil', type: 'symlink', linkname: outside },
        { name: 'up', type: 'symlink', linkname: '../../../..' },
        { name: 'plain/', type: 'directory' },
      ]);
    });

    async function attempt(entries: TestEntry[]): Promise<unknown> {
      const key = `hostile-${Math.random()}`;
      await sn.prepare(key, 'L1');
      const real = entries.map((e) => (e.linkname === outsidePlaceholder ? { ...e, linkname: outside } : e));
      return applyLayer(await sn.layout(key), stream(await makeLayer(real)), MediaType.OciLayerGzip).then(
        () => undefined,
        (err: unknown) => err,
      );
    }

    async function outsideUntouched(): Promise<void> {
      expect(await readdir(outside)).toEqual(['secret']);
      expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('keep me');
      expect((await readdir(dir.path)).sort()).toEqual(['outside', 'root']);
    }

    const cases: Array<[string, TestEntry[], RegExp]> = [
      ['"../x"', [{ name: '../x', content: 'x' }], /"\.\.\/x".*escapes the root/],
      ['"a/../../x"', [{ name: 'a/../../x', content: 'x' }], /escapes the root/],
      ['a symlinked parent from this layer', [{ name: 'ln', type: 'symlink', linkname: '/' }, { name: 'ln/tmp/pwned', content: 'x' }], /"ln\/tmp\/pwned".*parent directory "ln" is a symlink/],
      ['a symlinked parent from a lower layer', [{ name: 'evil/pwned', content: 'x' }], /"evil\/pwned".*"evil" is a symlink/],
      ['a relative symlinked parent', [{ name: 'up/x', content: 'x' }], /"up\/x".*symlink/],
      ['a file of this layer as a parent', [{ name: 'f', content: 'x' }, { name: 'f/pwned', content: 'y' }], /"f\/pwned".*parent "f" is not a directory/],
      ['a whiteout through a symlink', [{ name: 'evil/.wh.secret' }], /"evil\/.wh.secret".*symlink/],
      ['a hardlink out of the root', [{ name: 'hl', type: 'link', linkname: '../../outside/secret' }], /"hl".*hardlink target.*escapes the root/],
      ['a hardlink through a symlink', [{ name: 'lnk', type: 'symlink', linkname: outsidePlaceholder }, { name: 'hl', type: 'link', linkname: 'lnk/secret' }], /"hl".*symlink "lnk"/],
      // overlay: the lower layer's files are not in this layer at all; native: the path crosses a symlink.
      ['a hardlink through a lower symlink', [{ name: 'hl', type: 'link', linkname: 'evil/secret' }], /"hl".*(symlink "evil"|does not exist in this layer)/],
      ['a hardlink to a lower layer or missing file', [{ name: 'hl', type: 'link', linkname: 'nothing' }], /does not exist/],
    ];

    it.each(cases)('rejects %s', async (_label, entries, message) => {
      const err = await attempt(entries);
      expect(err).toBeInstanceOf(LayerSecurityError);
      expect((err as Error).message).toMatch(message);
      await outsideUntouched();
    });

    it('takes absolute names relative to the root, as containerd does', async () => {
      await sn.prepare('abs', 'L1');
      await applyLayer(await sn.layout('abs'), stream(await makeLayer([{ name: '/abs/file', content: 'inside' }, { name: '/plain/../top', content: 't' }])), MediaType.OciLayerGzip);
      const upper = (await sn.layout('abs')).dir;
      expect(await readFile(join(upper, 'abs/file'), 'utf8')).toBe('inside');
      expect(await readFile(join(upper, 'top'), 'utf8')).toBe('t');
      await outsideUntouched();
    });

    it('replaces a planted symlink instead of writing through it', async () => {
      await sn.prepare('plant', 'L1');
      await applyLayer(
        await sn.layout('plant'),
        stream(await makeLayer([{ name: 's', type: 'symlink', linkname: join(outside, 'secret') }, { name: 's', content: 'replaced' }, { name: 'evil', content: 'now a file' }])),
        MediaType.OciLayerGzip,
      );
      const upper = (await sn.layout('plant')).dir;
      expect((await lstat(join(upper, 's'))).isFile()).toBe(true);
      expect(await readFile(join(upper, 'evil'), 'utf8')).toBe('now a file');
      await outsideUntouched();
    });
  });
});

describe.each(kinds)('an Applier taking over another one mid-layer (%s)', (kind) => {
  let dir: { path: string; cleanup(): Promise<void> };
  let sn: LocalSnapshotter;

  beforeEach(async () => {
    dir = await tempDir(`builder-apply-handover-${kind}-`);
    sn = await createSnapshotter(join(dir.path, 'root'), kind);
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  /** The layer's entries with their bodies, as applyLayer gives them to an Applier. */
  async function entriesOf(blob: Buffer): Promise<Array<[LayerEntry, Buffer]>> {
    const reader = await readLayerEntries(stream(blob), MediaType.OciLayerGzip);
    const out: Array<[LayerEntry, Buffer]> = [];
    for await (const entry of reader.entries) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      out.push([layerEntryOf(entry.header, () => undefined), Buffer.concat(chunks)]);
    }
    await reader.done;
    return out;
  }

  async function* bodyOf(bytes: Buffer): AsyncGenerator<Buffer> {
    if (bytes.length > 0) yield bytes;
  }

  /**
   * Everything a user (or overlayfs) could notice of a tree, by relative path. Times the layer
   * does not give (new implicit directories, whiteouts, directories the native driver changed)
   * are the time of the write, the same only to within this test's run: shown as "now".
   */
  async function describeTree(root: string): Promise<string[]> {
    const now = Date.now() - 60_000;
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      for (const name of (await readdir(join(root, rel))).sort()) {
        const path = join(root, rel, name);
        const st = await lstat(path);
        const what = st.isFile() ? await readFile(path, 'utf8') : st.isSymbolicLink() ? await readlink(path) : '';
        const opaque = st.isDirectory() ? await getAttribute(path, 'trusted.overlay.opaque').then(String, () => '') : '';
        out.push(`${join(rel, name)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs > now ? 'now' : st.mtimeMs} ${st.nlink} ${st.rdev} ${what} ${opaque}`);
        if (st.isDirectory()) await walk(join(rel, name));
      }
    };
    await walk('');
    return out;
  }

  it('goes on from any entry as the first would have: same tree, times, whiteouts and disk use', async () => {
    await sn.prepare('base');
    await applyLayer(await sn.layout('base'), stream(await makeLayer(baseLayer)), MediaType.OciLayerGzip);
    await sn.commit('base-c', 'base');
    // After the opaque marker, a whiteout in that directory hides nothing more (overlay must not
    // make one), and a marker after a file of this layer keeps that file (native must not remove
    // it): only a taker-over that knows what the first wrote gets these right.
    const entries = await entriesOf(
      await makeLayer([
        ...topLayer,
        { name: 'opq/.wh.old1' },
        { name: 'etc/.wh.passwd' },
        { name: 'implicit/deep/more', content: 'more' },
        { name: 'lib/.wh..wh..opq' },
      ]),
    );
    const warn = (): void => undefined;

    await sn.prepare('whole', 'base-c');
    const whole = new Applier(await sn.layout('whole'), warn);
    for (const [entry, body] of entries) await whole.apply(entry, bodyOf(body));
    await whole.finish();
    const expected = await describeTree((await sn.layout('whole')).dir);

    for (let at = 0; at <= entries.length; at++) {
      await sn.prepare(`split-${at}`, 'base-c');
      const layout = await sn.layout(`split-${at}`);
      const first = new Applier(layout, warn);
      for (const [entry, body] of entries.slice(0, at)) await first.apply(entry, bodyOf(body));
      const second = new Applier(layout, warn, undefined, first.handOver());
      for (const [entry, body] of entries.slice(at)) await second.apply(entry, bodyOf(body));
      await second.finish();
      expect(await describeTree(layout.dir), `taken over at entry ${at}`).toEqual(expected);
      // The whiteout template is removed by whichever Applier finishes.
      expect(readdirSync(layout.scratch).filter((name) => name.startsWith('whiteout-')), `taken over at entry ${at}`).toEqual([]);
    }
  });

  it('hands over the disk use counted so far', async () => {
    const entries = await entriesOf(await makeLayer(baseLayer));
    const warn = (): void => undefined;
    for (let at = 0; at <= entries.length; at++) {
      await sn.prepare(`count-${at}`);
      const layout = await sn.layout(`count-${at}`);
      const first = new Applier(layout, warn);
      for (const [entry, body] of entries.slice(0, at)) await first.apply(entry, bodyOf(body));
      const second = new Applier(layout, warn, undefined, first.handOver());
      for (const [entry, body] of entries.slice(at)) await second.apply(entry, bodyOf(body));
      await second.finish();
      expect(second.usage(), `taken over at entry ${at}`).toEqual(await sn.usage(`count-${at}`));
    }
  });
});

describe('applyLayer on a writer thread', () => {
  /** The compiled script large layers get (npm run build makes it). */
  const writerScript = new URL('../../dist/snapshotter/apply-worker.js', import.meta.url);
  let dir: { path: string; cleanup(): Promise<void> };
  let sn: LocalSnapshotter;

  beforeEach(async () => {
    // A missing script would quietly apply on this thread: these tests would test nothing.
    expect(existsSync(fileURLToPath(writerScript)), 'run npm run build first').toBe(true);
    dir = await tempDir('builder-apply-writer-');
    sn = await createSnapshotter(join(dir.path, 'root'), 'overlayfs');
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  /** Many files over several of the writer's 1 MiB batches, a body split across batches, links and a fifo (the corpus has replaced names). */
  function bigLayer(): TestEntry[] {
    let seed = 7;
    const random = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const entries: TestEntry[] = [];
    for (let d = 0; d < 20; d++) {
      entries.push({ name: `d${d}/`, type: 'directory', mode: d % 2 ? 0o750 : 0o755, uid: d });
      for (let f = 0; f < 30; f++) {
        entries.push({ name: `d${d}/f${f}`, content: Buffer.alloc(random(40_000), `${d}-${f} `), mode: f % 3 ? 0o644 : 0o4755, gid: f });
      }
    }
    const big = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(random(2 ** 30), i);
    entries.push(
      { name: 'big', content: big, uid: 1000 },
      { name: 'd3/hard', type: 'link', linkname: 'big' },
      { name: 'd4/link', type: 'symlink', linkname: '../big' },
      { name: 'd5/pipe', type: 'fifo' },
    );
    return entries;
  }

  /** Everything a user could notice of a tree, by relative path. */
  async function describeTree(root: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      for (const name of (await readdir(join(root, rel))).sort()) {
        const path = join(root, rel, name);
        const st = await lstat(path);
        const what = st.isFile() ? createHash('sha256').update(await readFile(path)).digest('hex') : st.isSymbolicLink() ? await readlink(path) : '';
        out.push(`${join(rel, name)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs} ${st.nlink} ${what}`);
        if (st.isDirectory()) await walk(join(rel, name));
      }
    };
    await walk('');
    return out;
  }

  it('writes a layer larger than its buffers exactly as the calling thread does', async () => {
    const blob = await makeLayer(bigLayer());
    await sn.prepare('here');
    await sn.prepare('thread');
    const here = await applyLayer(await sn.layout('here'), stream(blob), MediaType.OciLayerGzip, { writerScript: false });
    const thread = await applyLayer(await sn.layout('thread'), stream(blob), MediaType.OciLayerGzip, { writerScript });
    expect(thread.diffID).toBe(here.diffID);
    expect(thread.usage).toEqual(await sn.usage('thread'));
    expect(here.usage).toEqual(await sn.usage('here'));
    const tree = await describeTree((await sn.layout('thread')).dir);
    expect(tree.length).toBe(20 * 31 + 4);
    expect(thread.usage?.inodes).toBe(20 * 31 + 3 + 1);
    expect(tree).toEqual(await describeTree((await sn.layout('here')).dir));
  });

  it('rejects with the stream error and leaves no thread behind when the blob fails midway', async () => {
    const blob = await makeLayer(bigLayer());
    await sn.prepare('warm-up');
    await applyLayer(await sn.layout('warm-up'), stream(blob), MediaType.OciLayerGzip, { writerScript });
    const threads = readdirSync('/proc/self/task').length;

    await sn.prepare('cut');
    const cut = new Readable({ read() {} });
    cut.push(blob.subarray(0, blob.length / 2));
    setTimeout(() => cut.destroy(Object.assign(new Error('connection reset by peer'), { code: 'ECONNRESET' })), 50);
    await expect(applyLayer(await sn.layout('cut'), cut, MediaType.OciLayerGzip, { writerScript })).rejects.toThrow('connection reset by peer');
    expect(readdirSync('/proc/self/task').length).toBe(threads);
    await sn.remove('cut');
  });

  it('keeps a held thread between layers, writes each as the calling thread does, and stops it once released', async () => {
    const first = await makeLayer(bigLayer());
    const second = await makeLayer([{ name: 'd1/f1', type: 'symlink', linkname: 'f2' }, { name: 'd2/new', content: 'second layer' }, { name: 'd3/', type: 'directory', mode: 0o700 }]);
    await sn.prepare('warm-up');
    await applyLayer(await sn.layout('warm-up'), stream(first), MediaType.OciLayerGzip, { writerScript });
    const threads = readdirSync('/proc/self/task').length;

    const release = holdLayerWriter(writerScript);
    // Started at once, before any layer asks for it.
    expect(readdirSync('/proc/self/task').length).toBe(threads + 1);
    for (const [name, script] of [
      ['thread', writerScript],
      ['here', false],
    ] as const) {
      await sn.prepare(`${name}-1`);
      await applyLayer(await sn.layout(`${name}-1`), stream(first), MediaType.OciLayerGzip, { writerScript: script });
      await sn.commit(`${name}-1c`, `${name}-1`);
      await sn.prepare(`${name}-2`, `${name}-1c`);
      await applyLayer(await sn.layout(`${name}-2`), stream(second), MediaType.OciLayerGzip, { writerScript: script });
    }
    expect(readdirSync('/proc/self/task').length).toBe(threads + 1);
    expect(await describeTree((await sn.layout('thread-2')).dir)).toEqual(await describeTree((await sn.layout('here-2')).dir));
    expect(await describeTree((await sn.layout('thread-1c')).dir)).toEqual(await describeTree((await sn.layout('here-1c')).dir));

    release();
    await expect.poll(() => readdirSync('/proc/self/task').length).toBe(threads);
  });

  it('reports a hostile entry found by the writer thread as a LayerSecurityError naming the layer', async () => {
    await sn.prepare('evil');
    const entries: TestEntry[] = [...bigLayer().slice(0, 200), { name: 'd1/../../escape', content: 'x' }, ...bigLayer().slice(200)];
    const err = await applyLayer(await sn.layout('evil'), stream(await makeLayer(entries)), MediaType.OciLayerGzip, { writerScript, layerName: 'sha256:evil' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LayerSecurityError);
    expect((err as Error).message).toBe('layer sha256:evil: refusing layer entry "d1/../../escape": path "d1/../../escape" escapes the root through ".."');
  });
});

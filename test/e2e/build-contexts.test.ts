// Named build contexts (`--build-context`) through the library and real runc: a directory, an
// image and an OCI layout standing in for a stage or an image, in FROM, COPY --from and
// RUN --mount from=.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { build, type BuildOptions } from '../../src/client/build.js';
import { parseBuildContext } from '../../src/client/context-sources.js';
import type { ProgressEvent } from '../../src/progress.js';
import { busyboxLayout } from '../helpers/base-image.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('build-contexts');

let counter = 0;

async function writeDir(files: Record<string, string>): Promise<string> {
  const dir = join(fx.work, `dir-${++counter}`);
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  return dir;
}

/** Builds `dockerfile` (BASE: the busybox image); returns what the RUN steps printed and which ran. */
async function buildWith(dockerfile: string, opts: Partial<BuildOptions>) {
  const ctx = await writeDir({ Dockerfile: dockerfile.replaceAll('BASE', fx.base), 'in-context.txt': 'the main context\n' });
  const events: ProgressEvent[] = [];
  const result = await build({ context: ctx, root: join(fx.work, 'root'), network: 'none', onProgress: (e) => events.push(e), ...opts });
  const stdout = events.flatMap((e) => (e.type === 'log' && e.stream === 'stdout' ? [e.data] : [])).join('');
  const ran = events.flatMap((e) => (e.type === 'step' && e.status === 'started' && e.name.startsWith('[') ? [e.name] : []));
  return { result, stdout, ran };
}

describe('--build-context', () => {
  it('a directory replaces a stage of its name in COPY --from and RUN --mount, with its own .dockerignore', async () => {
    const deps = await writeDir({ 'marker.txt': 'from the directory\n', 'secret.log': 'ignored\n', '.dockerignore': '*.log\n' });
    const { stdout, ran } = await buildWith(
      `FROM BASE AS deps
RUN echo from the stage > /marker.txt
FROM BASE
COPY --from=deps / /deps/
RUN --mount=from=deps,target=/mnt cat /deps/marker.txt /mnt/marker.txt && ls -A /deps && ls -A /mnt
`,
      { buildContexts: { deps: { type: 'local', path: deps } } },
    );
    // As in BuildKit, the .dockerignore itself is part of the context.
    expect(stdout).toBe('from the directory\nfrom the directory\n.dockerignore\nmarker.txt\n.dockerignore\nmarker.txt\n');
    expect(ran.some((n) => n.includes('echo from the stage'))).toBe(false);
  });

  it('a directory as the base of a stage: its files on an empty filesystem, the stage\'s instructions on top', async () => {
    const files = await writeDir({ 'app/index.html': '<h1>hi</h1>\n', 'notes.log': 'ignored\n', '.dockerignore': '*.log\n' });
    const { stdout } = await buildWith(
      `FROM site AS content
COPY in-context.txt /app/
FROM BASE
COPY --from=content / /srv/
RUN find /srv -type f | sort && cat /srv/app/in-context.txt
`,
      { buildContexts: { site: { type: 'local', path: files } } },
    );
    expect(stdout).toBe('/srv/.dockerignore\n/srv/app/in-context.txt\n/srv/app/index.html\nthe main context\n');
  });

  it('docker-image:// replaces an image, whatever form the Dockerfile names it in', async () => {
    const { stdout } = await buildWith('FROM docker.io/library/nosuchimage:latest\nRUN echo ran on $(busybox | head -n 1 | cut -d" " -f1)\n', {
      buildContexts: { nosuchimage: { type: 'image', ref: fx.base } },
    });
    expect(stdout).toBe('ran on BusyBox\n');
  });

  it('oci-layout:// gives the image of a layout, by tag or digest, to FROM and to a replaced stage', async () => {
    const layout = await busyboxLayout();
    const byTag = await buildWith('FROM local/base\nRUN echo from the layout\n', { buildContexts: { 'local/base': { type: 'oci-layout', path: layout, tag: 'latest' } } });
    expect(byTag.stdout).toBe('from the layout\n');
    const { result } = byTag;
    expect(result.config.config?.Env).toEqual(expect.arrayContaining([expect.stringMatching(/^PATH=/)]));

    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const digest = index.manifests[0]!.digest as `sha256:${string}`;
    const byDigest = await buildWith('FROM pinned\nRUN echo by digest\n', { buildContexts: { pinned: { type: 'oci-layout', path: layout, digest } } });
    expect(byDigest.result.config.rootfs.diff_ids.slice(0, 1)).toEqual(result.config.rootfs.diff_ids.slice(0, 1));

    const ref = parseBuildContext(`tools=oci-layout://${layout}`);
    expect(ref).toEqual({ name: 'tools', source: { type: 'oci-layout', path: layout } });
    const replaced = await buildWith('FROM scratch AS tools\nFROM tools\nRUN echo replaced stage\n', { buildContexts: { tools: ref.source } });
    expect(replaced.stdout).toBe('replaced stage\n');
  });

  it('names what is wrong with a context', async () => {
    const missing = join(fx.work, 'missing-dir');
    await expect(buildWith('FROM BASE\n', { buildContexts: { deps: { type: 'local', path: missing } } })).rejects.toThrow(`--build-context deps: ${missing} is not a directory`);
    const layout = await busyboxLayout();
    await expect(buildWith('FROM base\n', { buildContexts: { base: { type: 'oci-layout', path: layout, tag: 'nope' } } })).rejects.toThrow(
      `--build-context base: OCI layout ${layout}:nope: no image by that tag in index.json`,
    );
    expect(() => parseBuildContext('deps')).toThrow(/expected NAME=PATH/);
    expect(() => parseBuildContext('src=https://github.com/a/b.git')).toThrow(/Git repository .* not supported yet/);
    expect(parseBuildContext('x=oci-layout://dir/layout:v1@sha256:' + 'a'.repeat(64))).toEqual({
      name: 'x',
      source: { type: 'oci-layout', path: 'dir/layout', tag: 'v1', digest: `sha256:${'a'.repeat(64)}` },
    });
  });
});

// Heredocs through the real solver: RUN <<EOF runs its body under runc, a `#!` heredoc runs as
// a script that leaves no trace in the layer, COPY <<EOF writes files with the given content.
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { build } from '../../src/client/build.js';
import { useBuildFixture } from '../helpers/fixture.js';

const fx = useBuildFixture('heredoc');

const TAB = '\t';
const DOCKERFILE = (base: string) => `FROM ${base}
ENV WHO=world
RUN <<EOF
mkdir -p /out
echo "plain $WHO" > /out/plain
EOF
RUN <<-EOT
${TAB}echo chomped > /out/chomped
${TAB}EOT
RUN <<EOF
#!/bin/sh
echo "script $0" > /out/script
EOF
RUN <<  SPACED
echo "spaced $WHO" > /out/spaced
SPACED
RUN cat <<A > /out/a && cat <<'B' > /out/b
a $WHO
A
b $WHO
B
COPY <<greeting.txt <<'raw.txt' /files/
hello "$WHO"
greeting.txt
raw $WHO
raw.txt
COPY --chmod=0755 <<EOF /usr/local/bin/hi
#!/bin/sh
echo hi
EOF
`;

describe('heredocs, built for real', () => {
  it('runs RUN heredocs (plain, <<-, shebang, blanks after <<, cat <<) and writes COPY heredocs', async () => {
    const ctx = join(fx.work, 'ctx');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE(fx.base));
    const out = join(fx.work, 'image.tar');
    await build({ context: ctx, root: join(fx.work, 'root'), network: 'none', outputs: [{ type: 'oci', dest: out }], tags: ['heredoc:test'] });
    const layout = join(fx.work, 'layout');
    const unpacked = join(fx.work, 'unpacked');
    await mkdir(layout, { recursive: true });
    expect(spawnSync('tar', ['-xf', out, '-C', layout]).status).toBe(0);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
    const refName = index.manifests[0]?.annotations?.['org.opencontainers.image.ref.name'];
    const r = spawnSync('umoci', ['unpack', '--rootless', '--image', refName ? `${layout}:${refName}` : layout, unpacked], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const fs = join(unpacked, 'rootfs');
    expect(await readFile(join(fs, 'out/plain'), 'utf8')).toBe('plain world\n');
    expect(await readFile(join(fs, 'out/chomped'), 'utf8')).toBe('chomped\n');
    expect(await readFile(join(fs, 'out/script'), 'utf8')).toBe('script /.builder-heredoc/EOF\n');
    expect(await readFile(join(fs, 'out/spaced'), 'utf8')).toBe('spaced world\n');
    expect(await readFile(join(fs, 'out/a'), 'utf8')).toBe('a world\n');
    expect(await readFile(join(fs, 'out/b'), 'utf8')).toBe('b $WHO\n');
    expect(await readFile(join(fs, 'files/greeting.txt'), 'utf8')).toBe('hello "world"\n');
    expect(await readFile(join(fs, 'files/raw.txt'), 'utf8')).toBe('raw $WHO\n');
    expect((await stat(join(fs, 'files/greeting.txt'))).mode & 0o777).toBe(0o644);
    expect((await stat(join(fs, 'usr/local/bin/hi'))).mode & 0o777).toBe(0o755);
    // The script file existed only while its step ran.
    expect(await readdir(fs)).not.toContain('.builder-heredoc');
  });

  it('COPY --from=<image ref> copies out of a pulled image', async () => {
    const ctx = join(fx.work, 'from-image');
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `FROM scratch\nCOPY --from=${fx.base} /bin/busybox /bin/bb\n`);
    const out = join(fx.work, 'from-image.tar');
    await build({ context: ctx, root: join(fx.work, 'root-from-image'), network: 'none', outputs: [{ type: 'oci', dest: out }], tags: ['from-image:test'] });
    const layout = join(fx.work, 'from-image-layout');
    await mkdir(layout, { recursive: true });
    expect(spawnSync('tar', ['-xf', out, '-C', layout]).status).toBe(0);
    const unpacked = join(fx.work, 'from-image-unpacked');
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
    const refName = index.manifests[0]?.annotations?.['org.opencontainers.image.ref.name'];
    const r = spawnSync('umoci', ['unpack', '--rootless', '--image', refName ? `${layout}:${refName}` : layout, unpacked], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const st = await stat(join(unpacked, 'rootfs/bin/bb'));
    expect(st.size).toBe((await stat('/bin/busybox')).size);
  });
});

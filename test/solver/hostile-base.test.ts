// A base image whose layer cannot be applied safely (an entry escaping through `..`, a hardlink
// out of the root, a path through a symlink loop, a corrupt tar) is pulled from a real registry;
// layers are unpacked only when a step needs them, yet the failure is the FROM step's: the
// error names the FROM line, the image and the layer digest, the RUN after it never starts,
// and nothing is left mounted, running or half-unpacked.

import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { events, leftoverContainers, mountsUnder, runBuilder } from '../helpers/cli.js';
import { hostArchitecture } from '../helpers/base-image.js';
import { useBuildFixture } from '../helpers/fixture.js';
import { makeTar } from '../snapshotter/helpers.js';

const fx = useBuildFixture('hostile-base');

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Pushes a one-layer image made of `tarBytes` (gzipped) with skopeo; returns the layer's digest. */
async function pushImage(ref: string, tarBytes: Buffer): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'builder-hostile-layout-'));
  try {
    const blobs = join(dir, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const put = async (bytes: Buffer): Promise<string> => {
      const digest = sha256(bytes);
      await writeFile(join(blobs, digest.slice(7)), bytes);
      return digest;
    };
    const layer = gzipSync(tarBytes);
    const config = Buffer.from(JSON.stringify({ architecture: hostArchitecture(), os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha256(tarBytes)] } }));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await put(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: await put(layer), size: layer.length }],
      }),
    );
    const index = {
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: await put(manifest), size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    };
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    const r = spawnSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${dir}:latest`, `docker://${ref}`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return sha256(layer);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const CASES: Array<{ id: string; tar: () => Promise<Buffer>; reason: RegExp }> = [
  { id: 'dotdot', tar: () => makeTar([{ name: 'etc/', type: 'directory' }, { name: '../escape', content: 'x' }]), reason: /refusing layer entry "\.\.\/escape": .*escapes the root/ },
  { id: 'hardlink-out', tar: () => makeTar([{ name: 'hl', type: 'link', linkname: '../../../etc/passwd' }]), reason: /refusing layer entry "hl": hardlink target .*escapes the root/ },
  {
    id: 'symlink-loop',
    tar: () => makeTar([{ name: 'a', type: 'symlink', linkname: 'b' }, { name: 'b', type: 'symlink', linkname: 'a' }, { name: 'a/x', content: 'x' }]),
    reason: /refusing layer entry "a\/x": parent directory "a" is a symlink/,
  },
  // A valid gzip stream of bytes that are no tar; the diff_id matches them, so only the tar is wrong.
  { id: 'corrupt-tar', tar: async () => randomBytes(4096), reason: /./ },
];

describe('a hostile base layer', () => {
  it.each(CASES.map((c) => [c.id, c] as const))('%s fails the FROM step that pulled it, not the RUN that needed it', async (id, c) => {
    const ref = `${fx.registry.host}/hostile/${id}:latest`;
    const layerDigest = await pushImage(ref, await c.tar());
    const ctx = join(fx.work, `ctx-${id}`);
    const root = join(fx.work, `root-${id}`);
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'Dockerfile'), `# a base image that cannot be unpacked\nFROM ${ref}\nRUN echo ran > /ran\n`);

    const r = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', ctx]);
    expect(r.code, r.stderr).not.toBe(0);
    // The message points at the FROM line and names the image and the layer.
    const message = r.stderr.split('\n').find((l) => l.startsWith('ERROR: '));
    expect(message, r.stderr).toMatch(new RegExp(`^ERROR: Dockerfile:2: failed to unpack layer ${layerDigest}: `));
    expect(message).toMatch(c.reason);
    // The quoted source is the FROM line.
    expect(r.stderr).toContain(`  2 | FROM ${ref}\n`);

    const steps = events(r.stderr).filter((e) => e.type === 'step');
    const failed = steps.filter((e) => e.status === 'error');
    expect(failed.map((e) => [e.name.replace(/@sha256:[0-9a-f]+$/, ''), e.line])).toEqual([[`[1/2] FROM ${ref}`, 2]]);
    expect(failed[0]?.error).toContain(layerDigest);
    // The RUN never started.
    expect(steps.filter((e) => e.name.startsWith('[2/2]'))).toEqual([]);

    expect(mountsUnder(root)).toEqual([]);
    expect(leftoverContainers(root)).toEqual([]);
    // No snapshot of the failed layer was kept.
    expect(await readdir(join(root, 'snapshots'))).toEqual([]);

    // Again, with the image now in the local store (its FROM step is a cache hit): the same error.
    const again = await runBuilder(['build', '--network', 'none', '--root', root, '--progress', 'json', ctx]);
    expect(again.code).not.toBe(0);
    expect(again.stderr.split('\n').find((l) => l.startsWith('ERROR: '))).toBe(message);
    expect(events(again.stderr).filter((e) => e.type === 'step' && e.name.startsWith('[2/2]'))).toEqual([]);
  });
});

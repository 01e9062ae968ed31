// Unpacks an OCI archive written by `-o type=oci,dest=…` with umoci (not builder), so tests
// look at an image the way an independent tool sees it.

import { spawnSync } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Unpacks `tarball` under `work/<name>-…` and returns the image's root filesystem. */
export async function unpackOciArchive(tarball: string, work: string, name: string): Promise<string> {
  const layout = join(work, `${name}-layout`);
  const out = join(work, `${name}-unpacked`);
  await mkdir(layout, { recursive: true });
  const untar = spawnSync('tar', ['-xf', tarball, '-C', layout], { encoding: 'utf8' });
  if (untar.status !== 0) throw new Error(`tar -xf ${tarball}: ${untar.stderr}`);
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
  const ref = index.manifests[0]?.annotations?.['org.opencontainers.image.ref.name'];
  const r = spawnSync('umoci', ['unpack', '--rootless', '--image', ref ? `${layout}:${ref}` : layout, out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`umoci unpack: ${r.stderr}`);
  return join(out, 'rootfs');
}

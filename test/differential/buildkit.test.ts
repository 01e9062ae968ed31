// Differential check against BuildKit (the reference): the same multi-step Dockerfile built by
// builder (overlayfs and native snapshotters) and by BuildKit inside dockerd; both images are
// pushed to a local registry, copied to OCI layouts with skopeo and unpacked with umoci, and the
// two filesystems must be the same: every path's type, mode, owner, size, content, symlink
// target and hardlink grouping (mtimes differ by nature and are not compared).
//
// Needs a Docker engine (`docker info` must answer); without one this skips, saying why.

import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage } from '../helpers/base-image.js';
import { runBuilder } from '../helpers/cli.js';
import { DOCKER, dockerSkipReason, fsTree, treeDifferences, type FsEntry } from '../helpers/differential.js';
import { startRegistry } from '../helpers/registry.js';

const skipReason = dockerSkipReason();
const dockerWorks = skipReason === undefined;
const title = dockerWorks ? 'filesystem identical to BuildKit' : `filesystem identical to BuildKit (SKIPPED: ${skipReason})`;
if (!dockerWorks) console.warn(`test/differential/buildkit.test.ts: skipped: ${skipReason}`);

// Added, changed, deleted, a dir replaced by a file and back, permissions and owners changed,
// hardlinks, symlinks, a setuid bit, an emptied dir, a whited-out subtree recreated; then a
// COPY --from of part of that tree.
const STEPS = [
  'mkdir -p /a/b /rep /file2dir /perm /gone/deep && echo one > /a/b/f && echo keep > /keep && echo x > /rep/x && echo f > /file2dir/old && chmod 600 /keep && ln -s /keep /a/link && touch /perm/p /gone/deep/z && echo tmp > /tmp/t',
  'echo changed > /a/b/f && echo added > /a/new && rm /keep && rm -rf /rep && echo now-a-file > /rep && chmod 751 /perm && chmod 4755 /perm/p && chown 1000:1000 /a/new && ln /a/new /a/hard && rm -rf /gone && rm /tmp/t',
  'rm /rep && mkdir /rep && echo back > /rep/y && rm -rf /file2dir && mkdir /file2dir && echo new > /file2dir/n && mkdir -p /gone/deep && chown -R 1000:0 /gone && ln -sf /a/new /a/link && rm /a/b/f',
];

let registry: Awaited<ReturnType<typeof startRegistry>>;
let work: string;
let base: string;

function sh(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Copies an image from the registry into an OCI layout and unpacks it with umoci. */
function unpack(ref: string, name: string): string {
  const layout = join(work, `${name}-layout`);
  sh('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:img`]);
  const bundle = join(work, `${name}-bundle`);
  sh('umoci', ['unpack', '--image', `${layout}:img`, bundle]);
  return join(bundle, 'rootfs');
}

describe.skipIf(!dockerWorks)(title, () => {
  let ctx: string;
  let reference: Map<string, FsEntry>;

  beforeAll(async () => {
    registry = await startRegistry();
    base = (await pushBusyboxImage(registry.host)).ref;
    work = await mkdtemp(join(tmpdir(), 'builder-differential-'));
    ctx = join(work, 'ctx');
    await mkdir(ctx);
    // Then COPY --from of a tree holding a hardlinked pair (a/new, a/hard).
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${base} AS steps\n${STEPS.map((s) => `RUN ${s}`).join('\n')}\nFROM steps\nCOPY --from=steps /a /copied-a\n`);

    const bkRef = `${registry.host}/diff/buildkit:latest`;
    sh(DOCKER, ['build', '--network=none', '--no-cache', '-q', '-t', bkRef, ctx], { DOCKER_BUILDKIT: '1' });
    sh(DOCKER, ['push', bkRef]);
    sh(DOCKER, ['rmi', '-f', bkRef]);
    reference = fsTree(unpack(bkRef, 'buildkit'));
    expect(reference.size).toBeGreaterThan(100);
  }, 180_000);

  afterAll(async () => {
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it.each(['overlayfs', 'native'])('under --snapshotter %s', async (snapshotter) => {
    const ref = `${registry.host}/diff/builder-${snapshotter}:latest`;
    const r = await runBuilder(['build', '--network', 'none', '--snapshotter', snapshotter, '--root', join(work, `root-${snapshotter}`), '--progress', 'plain', '-t', ref, '--push', ctx]);
    expect(r.code, r.stderr).toBe(0);
    const ours = fsTree(unpack(ref, snapshotter));
    expect(treeDifferences(reference, ours)).toEqual([]);
    // The changes the steps made are there (guards against comparing two empty trees).
    expect(ours.get('/rep/y')?.type).toBe('file');
    expect(ours.get('/a/hard')?.nlink).toBe(2);
    expect(ours.get('/copied-a/hard')?.nlink).toBe(2);
    expect(ours.get('/perm/p')?.mode).toBe(0o4755);
  }, 120_000);
});

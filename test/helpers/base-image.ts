// A busybox base image made without builder (umoci + skopeo), so tests of builder's pull path
// do not depend on builder's own image writing, nor on the internet.
//
//   const reg = await startRegistry();
//   const { ref, digest } = await pushBusyboxImage(reg.host);          // 127.0.0.1:PORT/library/busybox:latest
//   await pushBusyboxImage(reg.host, 'team/base', '1.0', { format: 'v2s2' }); // Docker schema 2 media types
//
// The image: one layer with the static /bin/busybox, a /bin/<applet> → busybox symlink per applet,
// /etc/passwd + /etc/group (root, app uid/gid 1000, nobody), /tmp (1777), /root, /home/app (owned
// by app); config Cmd ["sh"], PATH set, os/architecture of the host. The OCI layout is built once
// and cached in the temp dir (see busyboxLayout). Other test images are built on the same blocks:
// cachedLayout (a one-layer image from a populate function, built once per inputs), populateBusybox
// and pushLayout.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, cp, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostPlatform } from '../../src/oci/platform.js';
import { MediaType, type Descriptor, type ImageConfigFile, type ImageIndex, type ImageManifest, type Platform } from '../../src/oci/types.js';

const run = promisify(execFile);
/** Bump when the image's contents change, so cached layouts of the old recipe are not reused. */
const LAYOUT_VERSION = 1;

export const BUSYBOX_BIN = '/bin/busybox';

/**
 * The start of a Dockerfile that makes a busybox image from scratch, for a context holding a copy
 * of BUSYBOX_BIN named `busybox`: applets in /bin, /tmp, users root and app (1000:1000, home
 * /home/app). No registry needed, by builder and docker alike.
 */
export const BUSYBOX_FROM_SCRATCH = `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /tmp /home/app && chmod 1777 /tmp \\
 && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd \\
 && echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd \\
 && printf 'root:x:0:\\napp:x:1000:\\n' > /etc/group
`;
export const BUSYBOX_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface PushOptions {
  /** Registry credentials for the push (`skopeo --dest-creds`). */
  creds?: { user: string; password: string };
  /** Manifest format: OCI (default, as built) or Docker schema 2 (`v2s2`). */
  format?: 'oci' | 'v2s2';
}

let layout: Promise<string> | undefined;

/**
 * The OCI image layout holding the busybox image at tag `latest`, built once per test run (see
 * cachedLayout). Treat it as read-only: copy it (or push it with pushBusyboxImage) before changing anything.
 */
export function busyboxLayout(): Promise<string> {
  layout ??= readFile(BUSYBOX_BIN).then((busybox) =>
    cachedLayout({ name: 'busybox', inputs: [busybox], populate: populateBusybox, cmd: ['sh'], env: [BUSYBOX_PATH_ENV] }),
  );
  return layout;
}

/** Pushes the busybox image to `host/repo:tag` with skopeo; returns the reference and manifest digest. */
export async function pushBusyboxImage(
  host: string,
  repo = 'library/busybox',
  tag = 'latest',
  opts: PushOptions = {},
): Promise<{ ref: string; digest: string }> {
  return pushLayout(await busyboxLayout(), host, repo, tag, opts);
}

/** Pushes the image tagged `latest` in the OCI layout `dir` to `host/repo:tag` with skopeo. */
export async function pushLayout(dir: string, host: string, repo: string, tag: string, opts: PushOptions = {}): Promise<{ ref: string; digest: string }> {
  const ref = `${host}/${repo}:${tag}`;
  const digestFile = join(tmpdir(), `builder-digest-${process.pid}-${process.hrtime.bigint()}`);
  const args = ['copy', '--quiet', '--dest-tls-verify=false', '--digestfile', digestFile];
  if (opts.creds) args.push('--dest-creds', `${opts.creds.user}:${opts.creds.password}`);
  if (opts.format === 'v2s2') args.push('--format', 'v2s2');
  args.push(`oci:${dir}:latest`, `docker://${ref}`);
  await runTool('skopeo', args);
  const digest = (await readFile(digestFile, 'utf8')).trim();
  await rm(digestFile, { force: true });
  return { ref, digest };
}

/**
 * Pushes the busybox image as an image index with one entry per platform (`linux/arm64`,
 * `linux/arm/v7`…) to `host/repo:tag`: the same layer under each, each config naming its
 * platform (and carrying `labels`, to tell pushes apart). Returns the index digest and the
 * manifest digest of each platform.
 */
export async function pushMultiPlatformImage(
  host: string,
  repo: string,
  tag: string,
  platforms: string[],
  labels: Record<string, string> = {},
): Promise<{ ref: string; digest: string; manifests: Record<string, string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'builder-multi-'));
  try {
    await cp(await busyboxLayout(), dir, { recursive: true });
    const blob = async <T>(digest: string) => JSON.parse(await readFile(join(dir, 'blobs/sha256', digest.slice(7)), 'utf8')) as T;
    const put = async (value: unknown) => {
      const bytes = Buffer.from(JSON.stringify(value));
      const hex = createHash('sha256').update(bytes).digest('hex');
      await writeFile(join(dir, 'blobs/sha256', hex), bytes);
      return { digest: `sha256:${hex}` as const, size: bytes.length };
    };
    const top = (JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as ImageIndex).manifests[0]!;
    const manifest = await blob<ImageManifest>(top.digest);
    const config = await blob<ImageConfigFile>(manifest.config.digest);
    const entries: Descriptor[] = [];
    const manifests: Record<string, string> = {};
    for (const platform of platforms) {
      const [os = '', architecture = '', variant] = platform.split('/');
      const { variant: _v, ...rest } = config;
      const configDesc = await put({ ...rest, os, architecture, ...(variant ? { variant } : {}), config: { ...config.config, Labels: labels } });
      const desc = await put({ ...manifest, config: { ...manifest.config, ...configDesc } });
      const p: Platform = variant ? { os, architecture, variant } : { os, architecture };
      manifests[platform] = desc.digest;
      entries.push({ mediaType: MediaType.OciManifest, ...desc, platform: p });
    }
    const index = await put({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: entries });
    const layout: ImageIndex = { schemaVersion: 2, manifests: [{ mediaType: MediaType.OciIndex, ...index, annotations: { 'org.opencontainers.image.ref.name': 'multi' } }] };
    await writeFile(join(dir, 'index.json'), JSON.stringify(layout));
    const ref = `${host}/${repo}:${tag}`;
    await runTool('skopeo', ['copy', '--quiet', '--all', '--dest-tls-verify=false', `oci:${dir}:multi`, `docker://${ref}`]);
    return { ref, digest: index.digest, manifests };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The host's architecture in OCI terms. */
export function hostArchitecture(): string {
  return hostPlatform().architecture;
}

/** A one-layer image: what `populate` puts in an empty root filesystem, with this Cmd and Env. */
export interface LayoutRecipe {
  /** Names the cached directory (`builder-test-<name>-<key>`). */
  name: string;
  /** What the content depends on besides the recipe itself (file contents, versions): part of the key. */
  inputs: Array<string | Buffer>;
  populate(rootfs: string): Promise<void>;
  cmd: string[];
  env: string[];
}

/**
 * The OCI layout (image at tag `latest`) made from `recipe`, built once and shared by test
 * processes through a directory in the temp dir named after its inputs (plus umoci's version and
 * the architecture), so a test run builds it at most once and never leaves copies behind.
 */
export async function cachedLayout(recipe: LayoutRecipe): Promise<string> {
  const umociVersion = await run('umoci', ['--version']).then(
    (r) => r.stdout,
    () => {
      throw new Error('umoci not found (apt-get install -y umoci)');
    },
  );
  const hash = createHash('sha256');
  for (const input of recipe.inputs) hash.update(input);
  const key = hash
    .update(JSON.stringify([recipe.cmd, recipe.env]))
    .update(umociVersion)
    .update(hostArchitecture())
    .update(String(LAYOUT_VERSION))
    .digest('hex')
    .slice(0, 16);
  const cached = join(tmpdir(), `builder-test-${recipe.name}-${key}`);
  if (existsSync(join(cached, 'layout', 'index.json'))) return join(cached, 'layout');

  // Build aside, then rename into place: concurrent test processes race, the first rename wins.
  const scratch = await mkdtemp(join(tmpdir(), `builder-${recipe.name}-`));
  try {
    await buildLayout(scratch, recipe);
    await rm(join(scratch, 'bundle'), { recursive: true, force: true });
    await rename(scratch, cached).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
    });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return join(cached, 'layout');
}

async function buildLayout(root: string, recipe: LayoutRecipe): Promise<void> {
  const dir = join(root, 'layout');
  const bundle = join(root, 'bundle');
  const image = `${dir}:latest`;

  await runTool('umoci', ['init', '--layout', dir]);
  await runTool('umoci', ['new', '--image', image]);
  await runTool('umoci', ['unpack', '--image', image, bundle]);
  await recipe.populate(join(bundle, 'rootfs'));
  await runTool('umoci', ['repack', '--image', image, bundle]);
  await runTool('umoci', [
    'config',
    '--image',
    image,
    ...recipe.cmd.flatMap((arg) => ['--config.cmd', arg]),
    ...recipe.env.flatMap((e) => ['--config.env', e]),
    '--architecture',
    hostArchitecture(),
    '--os',
    'linux',
  ]);
  await runTool('umoci', ['gc', '--layout', dir]);
}

/** The busybox image's files (see the top of this file) under `rootfs`. */
export async function populateBusybox(rootfs: string): Promise<void> {
  for (const d of ['bin', 'etc', 'root', 'home/app', 'tmp', 'proc', 'sys', 'dev']) {
    await mkdir(join(rootfs, d), { recursive: true });
  }
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await chmod(join(rootfs, 'root'), 0o700);
  await chown(join(rootfs, 'home/app'), 1000, 1000);

  // A copy, not a link: the applet list includes `busybox` itself.
  await copyFile(BUSYBOX_BIN, join(rootfs, 'bin/busybox'));
  await chmod(join(rootfs, 'bin/busybox'), 0o755);
  const { stdout } = await run(BUSYBOX_BIN, ['--list']);
  for (const name of stdout.split('\n').map((s) => s.trim())) {
    if (!name || name === 'busybox' || name.includes('/')) continue;
    await symlink('busybox', join(rootfs, 'bin', name));
  }

  await writeFile(
    join(rootfs, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n');
}

/** Runs a tool, turning a failure into an error that names it and shows its stderr. */
export async function runTool(tool: string, args: string[]): Promise<void> {
  try {
    await run(tool, args, { maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: string | number };
    if (e.code === 'ENOENT') throw new Error(`${tool} not found (apt-get install -y ${tool})`);
    // Credentials never reach an error message.
    const shown = args.map((a, i) => (args[i - 1] === '--dest-creds' ? '***' : a)).join(' ');
    throw new Error(`${tool} ${shown} failed: ${e.stderr?.trim() || 'exit ' + String(e.code)}`);
  }
}

/** The files `ldd` says a binary loads: its libraries and the dynamic loader (the vDSO has no file). */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary]);
  // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)".
  return [...stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)].map((m) => m[1]!);
}

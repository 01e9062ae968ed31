// A Node.js base image made without builder: the busybox image (a shell and the usual applets)
// plus the host's own `node` and `npm`, laid out as the official node images do.
//
//   const { ref } = await pushNodeImage(reg.host);   // 127.0.0.1:PORT/library/node:latest
//
// The image: busybox's files (see base-image.ts), /usr/local/bin/node (the host's binary) with the
// shared libraries `ldd` lists at their host paths, npm's package directory at
// /usr/local/lib/node_modules/npm with a /usr/local/bin/npm launcher, and /usr/bin/env for `#!`
// lines; config Cmd ["node"]. The layout is built once per test run and cached in the temp dir.

import { chmod, copyFile, cp, mkdir, realpath, stat, symlink, writeFile } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { BUSYBOX_BIN, BUSYBOX_PATH_ENV, cachedLayout, populateBusybox, pushLayout, sharedLibraries, type PushOptions } from './base-image.js';

interface HostNode {
  node: string;
  /** npm's package directory (holding bin/npm-cli.js). */
  npm: string;
  /** Absolute paths of the libraries the node binary loads, its ELF interpreter included. */
  libraries: string[];
}

let layout: Promise<string> | undefined;

/** The OCI image layout holding the node image at tag `latest` (read-only: see cachedLayout). */
export function nodeLayout(): Promise<string> {
  layout ??= buildNodeLayout();
  return layout;
}

/** Pushes the node image to `host/repo:tag` with skopeo; returns the reference and manifest digest. */
export async function pushNodeImage(host: string, repo = 'library/node', tag = 'latest', opts: PushOptions = {}): Promise<{ ref: string; digest: string }> {
  return pushLayout(await nodeLayout(), host, repo, tag, opts);
}

async function buildNodeLayout(): Promise<string> {
  const host = await hostNode();
  // The key names every copied file by path, size and mtime: hashing 100 MB of node on every run
  // would cost more than the cache saves.
  const files = [BUSYBOX_BIN, host.node, join(host.npm, 'package.json'), ...host.libraries];
  const inputs = await Promise.all(files.map(async (f) => {
    const s = await stat(f);
    return `${f} ${s.size} ${s.mtimeMs}\n`;
  }));
  return cachedLayout({
    name: 'node',
    inputs,
    populate: (rootfs) => populateNode(rootfs, host),
    cmd: ['node'],
    env: [BUSYBOX_PATH_ENV],
  });
}

async function hostNode(): Promise<HostNode> {
  const node = await realpath(process.execPath);
  const npmCli = await realpath(await findOnPath('npm'));
  if (!npmCli.endsWith('/bin/npm-cli.js')) throw new Error(`npm on PATH resolves to ${npmCli}, not an npm package's bin/npm-cli.js`);
  const libraries = await sharedLibraries(node);
  if (!libraries.some((l) => l.includes('libc.so'))) throw new Error(`ldd ${node} lists no libc`);
  return { node, npm: dirname(dirname(npmCli)), libraries };
}

async function findOnPath(name: string): Promise<string> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    if (await stat(candidate).then((s) => s.isFile(), () => false)) return candidate;
  }
  throw new Error(`${name} not found on PATH`);
}

async function populateNode(rootfs: string, host: HostNode): Promise<void> {
  await populateBusybox(rootfs);
  const at = (path: string) => join(rootfs, path);
  await mkdir(at('usr/local/bin'), { recursive: true });
  await mkdir(at('usr/local/lib/node_modules'), { recursive: true });
  await mkdir(at('usr/bin'), { recursive: true });

  await copyFile(host.node, at('usr/local/bin/node'));
  await chmod(at('usr/local/bin/node'), 0o755);
  // Libraries at the paths the loader looks for them (copies of what the host's links point at).
  for (const lib of host.libraries) {
    await mkdir(dirname(at(lib)), { recursive: true });
    await copyFile(await realpath(lib), at(lib));
    await chmod(at(lib), 0o755);
  }
  await cp(host.npm, at('usr/local/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
  await writeFile(at('usr/local/bin/npm'), '#!/bin/sh\nexec node /usr/local/lib/node_modules/npm/bin/npm-cli.js "$@"\n', { mode: 0o755 });
  await writeFile(at('usr/local/bin/npx'), '#!/bin/sh\nexec node /usr/local/lib/node_modules/npm/bin/npx-cli.js "$@"\n', { mode: 0o755 });
  await symlink('/bin/busybox', at('usr/bin/env'));
}

// Resolving a path inside a container rootfs the way the container would see it: symlinks are
// followed, but absolute targets and `..` stay inside the rootfs (like filepath-securejoin).
// Used on the host before the container exists, so a hostile image cannot make us read or
// create files outside its rootfs.

import { lstatSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

const MAX_SYMLINKS = 255;

export async function resolveInRoot(root: string, unsafePath: string): Promise<string> {
  return resolveInRootSync(root, unsafePath);
}

/**
 * Synchronous on purpose: a handful of lstat calls of a few microseconds each, where the async
 * API's thread-pool round trips added milliseconds to every RUN step.
 */
export function resolveInRootSync(root: string, unsafePath: string): string {
  return join(root, ...resolveComponents(root, unsafePath));
}

/**
 * The path inside the root that `unsafePath` designates, as components. `links`, when given,
 * receives the root-relative path of every symlink followed on the way.
 */
export function resolveComponents(root: string, unsafePath: string, links?: string[]): string[] {
  let pending = split(unsafePath);
  const resolved: string[] = [];
  let followed = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(root, ...resolved, c);
    let isLink = false;
    try {
      isLink = lstatSync(candidate).isSymbolicLink();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
    if (!isLink) {
      resolved.push(c);
      continue;
    }
    if (++followed > MAX_SYMLINKS) throw new Error(`too many levels of symbolic links resolving ${unsafePath} in ${root}`);
    links?.push([...resolved, c].join('/'));
    const target = readlinkSync(candidate);
    if (target.startsWith('/')) resolved.length = 0;
    pending = [...split(target), ...pending];
  }
  return resolved;
}

function split(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

// Resolving a path inside a container rootfs the way the container would see it: symlinks are
// followed, but absolute targets and `..` stay inside the rootfs (like filepath-securejoin).
// Used on the host before the container exists, so a hostile image cannot make us read or
// create files outside its rootfs.

import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';

const MAX_SYMLINKS = 255;

export async function resolveInRoot(root: string, unsafePath: string): Promise<string> {
  let pending = split(unsafePath);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(root, ...resolved, c);
    let isLink = false;
    try {
      isLink = (await lstat(candidate)).isSymbolicLink();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
    if (!isLink) {
      resolved.push(c);
      continue;
    }
    if (++links > MAX_SYMLINKS) throw new Error(`too many levels of symbolic links resolving ${unsafePath} in ${root}`);
    const target = await readlink(candidate);
    if (target.startsWith('/')) resolved.length = 0;
    pending = [...split(target), ...pending];
  }
  return join(root, ...resolved);
}

function split(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}
